"""Sample ratio mismatch check."""

import pytest
from scipy.stats import chisquare

from experiments.stats.srm import check_srm


def test_hand_worked_chi_square():
    # 50/50 weights, 5100 vs 4900 users: chi2 = (100^2 + 100^2) / 5000 = 4, p = 0.0455 (1 dof).
    result = check_srm([5100, 4900], [50, 50])
    assert result.p_value == pytest.approx(0.04550026389635842, abs=1e-9)
    assert result.expected == (5000.0, 5000.0)
    assert not result.flagged


def test_flags_a_real_mismatch_and_respects_weights():
    assert check_srm([5300, 4700], [1, 1]).flagged
    assert not check_srm([7000, 3000], [70, 30]).flagged
    three = check_srm([1000, 1000, 1200], [1, 1, 1])
    assert three.p_value == pytest.approx(chisquare([1000, 1000, 1200]).pvalue)
    assert three.flagged


def test_not_before_enough_users():
    result = check_srm([60, 5], [1, 1])
    assert result.p_value < 0.001 and not result.flagged
    assert "too few users" in result.message
    assert check_srm([0, 0], [1, 1]).message == "no users yet"


@pytest.mark.parametrize("users, weights", [([1, 2], [1]), ([1, 2], [0, 1]), ([5], [1])])
def test_bad_input(users, weights):
    with pytest.raises(ValueError):
        check_srm(users, weights)
