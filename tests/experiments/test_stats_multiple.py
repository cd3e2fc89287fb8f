"""Holm correction across treatment arms."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from experiments.stats.multiple import holm_adjust


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03], [0.2], [0.001, 0.5, 0.02, 0.04, 0.8], [0.03, 0.03]])
def test_agrees_with_statsmodels(p):
    np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1], rtol=1e-12)


def test_hand_worked_and_nan():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01=0.03, 2*0.03=0.06, max(0.06, 1*0.04)=0.06
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    out = holm_adjust([0.02, np.nan])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])
