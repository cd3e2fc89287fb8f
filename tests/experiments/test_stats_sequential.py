"""Always-valid p-values and confidence sequences (normal-mixture mSPRT / Howard et al.)."""

import math

import numpy as np
import pytest

from experiments.stats.frequentist import RatioZTest
from experiments.stats.sequential import (
    SequentialConfig,
    SequentialRatioTest,
    always_valid_p_value,
    confidence_sequence_half_width,
    mixture_rho_squared,
    running_intersection,
    running_minimum,
)
from tests.experiments.stats_fixtures import CONTROL_USERS, TREATMENT_USERS, ratio_of


def test_rho_formula():
    # alpha = 0.05: -2 log 0.05 = 5.99146; log(1 + 5.99146) = 1.94469; sum / 10000.
    assert mixture_rho_squared(0.05, 10_000) == pytest.approx((5.991464547 + 1.944691) / 10_000, rel=1e-6)


def test_hand_worked_half_width_and_p_value():
    variance, n, alpha, n_star = 0.0004, 5000, 0.05, 10_000
    n_rho2 = n * mixture_rho_squared(alpha, n_star)
    expected_half = math.sqrt(2 * variance * (n_rho2 + 1) / n_rho2 * math.log(math.sqrt(n_rho2 + 1) / alpha))
    assert confidence_sequence_half_width(variance, n, alpha, n_star) == pytest.approx(expected_half, rel=1e-12)
    # The mSPRT with a N(0, tau^2) mixture, tau^2 = V n rho^2: Lambda = sqrt(V/(V+tau2)) exp(tau2 x^2/(2V(V+tau2))).
    effect = 0.05
    tau2 = variance * n_rho2
    likelihood_ratio = math.sqrt(variance / (variance + tau2)) * math.exp(
        tau2 * effect**2 / (2 * variance * (variance + tau2)))
    assert always_valid_p_value(effect, variance, n, alpha, n_star) == pytest.approx(1 / likelihood_ratio, rel=1e-9)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_p_value_is_alpha_exactly_on_the_boundary(alpha):
    variance, n = 0.0009, 12_345
    half = confidence_sequence_half_width(variance, n, alpha, 10_000)
    assert always_valid_p_value(half, variance, n, alpha, 10_000) == pytest.approx(alpha, rel=1e-9)
    assert always_valid_p_value(half * 1.01, variance, n, alpha, 10_000) < alpha


def test_sequence_is_wider_than_the_fixed_interval_and_p_is_larger():
    control, treatment = ratio_of(CONTROL_USERS * 200), ratio_of(TREATMENT_USERS * 200)
    fixed = RatioZTest(control, treatment).compute_result()
    seq = SequentialRatioTest(control, treatment).compute_result()
    assert seq.effect == pytest.approx(fixed.effect)
    assert seq.ci_upper - seq.ci_lower > fixed.ci_upper - fixed.ci_lower
    assert seq.p_value > fixed.p_value
    # Here z is large enough for both to reject.
    assert fixed.p_value < 1e-6 and seq.p_value < 0.05


def test_running_minimum_and_intersection():
    p = np.array([[0.5, 0.2, np.nan, 0.4, 0.01]])
    np.testing.assert_allclose(running_minimum(p), [[0.5, 0.2, 0.2, 0.2, 0.01]])
    lo, hi = running_intersection(np.array([-1.0, -0.5, -0.8]), np.array([1.0, 1.2, 0.3]))
    np.testing.assert_allclose(lo, [-1.0, -0.5, -0.5])
    np.testing.assert_allclose(hi, [1.0, 1.0, 0.3])


def test_config_is_validated_and_degenerate_data_reported():
    with pytest.raises(ValueError):
        SequentialConfig(n_star=0)
    from experiments.stats.statistics import RatioStatistic

    result = SequentialRatioTest(RatioStatistic(1, 0, 1, 0, 1, 0), ratio_of(TREATMENT_USERS)).compute_result()
    assert result.error_message
