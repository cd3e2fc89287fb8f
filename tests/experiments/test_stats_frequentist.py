"""Delta-method z-test of CTR against hand-worked numbers and statsmodels; the naive test."""

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats import proportion as smp
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from experiments.stats.frequentist import (
    DifferenceType,
    FrequentistConfig,
    RatioZTest,
    naive_impression_ztest,
)
from experiments.stats.statistics import RatioStatistic
from tests.experiments.stats_fixtures import CONTROL_USERS, TREATMENT_USERS, ratio_of


def test_hand_worked_absolute_difference():
    # Delta = 7/16 - 2/7 = 17/112; Var = 17/4802 + 65/32768 = 434593/78675968.
    result = RatioZTest(ratio_of(CONTROL_USERS), ratio_of(TREATMENT_USERS),
                        FrequentistConfig(difference_type=DifferenceType.ABSOLUTE)).compute_result()
    assert result.effect == pytest.approx(17 / 112, abs=1e-9)
    assert result.standard_error == pytest.approx(0.07432250106773733, abs=1e-9)
    assert result.p_value == pytest.approx(0.0411259567110044, abs=1e-6)
    assert result.ci_lower == pytest.approx(0.0061162889520093855, abs=1e-6)
    assert result.ci_upper == pytest.approx(0.29745513961941916, abs=1e-6)


def test_hand_worked_relative_lift():
    # L = (7/16)/(2/7) - 1 = 17/32; Var = Var_t/R_c^2 + R_t^2 Var_c/R_c^4 = 16513/131072.
    result = RatioZTest(ratio_of(CONTROL_USERS), ratio_of(TREATMENT_USERS)).compute_result()
    assert result.effect == pytest.approx(17 / 32, abs=1e-9)
    assert result.standard_error**2 == pytest.approx(16513 / 131072, abs=1e-9)
    assert result.p_value == pytest.approx(0.13446581259663426, abs=1e-6)
    assert result.ci_lower == pytest.approx(-0.16442455409930612, abs=1e-6)
    assert result.ci_upper == pytest.approx(1.2269245540993061, abs=1e-6)


def bernoulli_users(n: int, clicks: int) -> RatioStatistic:
    """n users with one impression each, ``clicks`` of whom clicked."""
    return RatioStatistic(n=n, sum_m=clicks, sum_d=n, sum_m2=clicks, sum_d2=n, sum_md=clicks)


@pytest.mark.parametrize("n_c, x_c, n_t, x_t", [(1000, 120, 1100, 160), (5000, 400, 4800, 350), (80, 9, 95, 20)])
def test_one_impression_per_user_agrees_with_statsmodels_wald(n_c, x_c, n_t, x_t):
    result = RatioZTest(bernoulli_users(n_c, x_c), bernoulli_users(n_t, x_t),
                        FrequentistConfig(difference_type=DifferenceType.ABSOLUTE)).compute_result()
    low, upp = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff")
    assert result.ci_lower == pytest.approx(low, abs=1e-6)
    assert result.ci_upper == pytest.approx(upp, abs=1e-6)
    sm = smp.test_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff")
    assert result.p_value == pytest.approx(sm.pvalue, abs=1e-6)


def test_naive_test_is_the_pooled_two_proportion_z_test():
    # Pooled p = 280/2100; z = (160/1100 - 120/1000) / sqrt(p (1-p) (1/1100 + 1/1000)).
    pooled = 280 / 2100
    z = (160 / 1100 - 120 / 1000) / np.sqrt(pooled * (1 - pooled) * (1 / 1100 + 1 / 1000))
    result = naive_impression_ztest(120, 1000, 160, 1100)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)), abs=1e-9)
    assert result.p_value == pytest.approx(proportions_ztest([160, 120], [1100, 1000])[1], abs=1e-12)
    low, upp = confint_proportions_2indep(160, 1100, 120, 1000, method="wald", compare="diff")
    assert (result.ci_lower, result.ci_upper) == pytest.approx((low, upp), abs=1e-9)


def test_naive_test_on_arrays_matches_scalars():
    arrays = naive_impression_ztest(np.array([120, 400]), np.array([1000, 5000]), np.array([160, 350]),
                                    np.array([1100, 4800]))
    for i, args in enumerate([(120, 1000, 160, 1100), (400, 5000, 350, 4800)]):
        assert arrays.p_value[i] == pytest.approx(naive_impression_ztest(*args).p_value)


def test_clustered_users_widen_the_interval_beyond_the_naive_one():
    # Two kinds of users: heavy clickers and never-clickers. Per impression it looks like lots of
    # data; per user there are only 20 units.
    control = ratio_of([(9, 10)] * 5 + [(0, 10)] * 5)
    treatment = ratio_of([(9, 10)] * 6 + [(0, 10)] * 4)
    delta = RatioZTest(control, treatment, FrequentistConfig(difference_type="absolute")).compute_result()
    naive = naive_impression_ztest(control.sum_m, control.sum_d, treatment.sum_m, treatment.sum_d)
    assert delta.standard_error > 2.5 * naive.standard_error
    assert delta.p_value > 0.5 and naive.p_value < delta.p_value / 3


@pytest.mark.parametrize("control, message", [
    (RatioStatistic(1, 1, 2, 1, 4, 2), "fewer than 2 users"),
    (RatioStatistic(5, 0, 10, 0, 20, 0), "no clicks in the control arm"),
])
def test_degenerate_inputs_give_an_error_message(control, message):
    result = RatioZTest(control, ratio_of(TREATMENT_USERS)).compute_result()
    assert result.error_message is not None and message in result.error_message
    assert np.isnan(result.p_value)


def test_bad_alpha_is_rejected():
    with pytest.raises(ValueError):
        FrequentistConfig(alpha=1.5)
