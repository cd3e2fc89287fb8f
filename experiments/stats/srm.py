"""Sample ratio mismatch: are users split between the arms the way the weights say?

A mismatch means assignment or logging is broken (an arm crashes, a bot hits one arm,
exposures get lost), and then no lift estimate can be trusted, however significant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chisquare

SRM_P_THRESHOLD = 0.001
SRM_MIN_USERS = 100


@dataclass(frozen=True)
class SrmResult:
    p_value: float
    expected: tuple[float, ...]
    observed: tuple[int, ...]
    flagged: bool
    message: str


def check_srm(users: Sequence[int], weights: Sequence[float], threshold: float = SRM_P_THRESHOLD,
              min_users: int = SRM_MIN_USERS) -> SrmResult:
    """Pearson chi-square of users per arm against  expected_i = N w_i / sum(w).

    chi2 = sum_i (o_i - e_i)^2 / e_i  with k - 1 degrees of freedom; flagged when
    p < threshold (0.001: SRM checks run on every look, so the bar is strict) and only
    once N >= min_users (before that, a few users make any split look odd).
    """
    observed = np.asarray(users, dtype=float)
    w = np.asarray(weights, dtype=float)
    if observed.shape != w.shape or observed.size < 2:
        raise ValueError("need one user count and one weight per arm, at least two arms")
    if np.any(w <= 0) or np.any(observed < 0):
        raise ValueError("weights must be > 0 and user counts >= 0")
    total = observed.sum()
    expected = total * w / w.sum()
    obs_tuple = tuple(int(x) for x in observed)
    if total == 0:
        return SrmResult(1.0, tuple(expected.tolist()), obs_tuple, False, "no users yet")
    p_value = float(chisquare(observed, expected).pvalue)
    flagged = bool(total >= min_users and p_value < threshold)
    if total < min_users:
        message = f"too few users to check ({int(total)} < {min_users})"
    elif flagged:
        message = f"sample ratio mismatch: p = {p_value:.2g} < {threshold:g}; check assignment and logging"
    else:
        message = f"split matches the weights (p = {p_value:.2g})"
    return SrmResult(p_value, tuple(expected.tolist()), obs_tuple, flagged, message)
