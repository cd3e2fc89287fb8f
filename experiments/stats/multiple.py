"""Multiple comparisons: with several treatments against one control, control the family-wise error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (same as statsmodels ``multipletests(method="holm")``).

    Sort p ascending; adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); nan stays nan.
    With one comparison it returns p unchanged.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
