"""Sufficient statistics: sums, validation, and the delta-method variance of a ratio."""

from fractions import Fraction

import numpy as np
import pytest

from experiments.stats.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic
from tests.experiments.stats_fixtures import CONTROL_USERS, TREATMENT_USERS, ratio_of


def test_hand_worked_ratio_variance():
    # R_c = 4/14 = 2/7. Linearised residuals e_i = m_i - R d_i = -1/7, -4/7, 4/7, 1/7, sum e^2 = 34/49;
    # mu_d = 14/4, so Var(R_c) = (34/49) / (n^2 mu_d^2) = (34/49) / 196 = 17/4802.
    control = ratio_of(CONTROL_USERS)
    assert control.ratio == pytest.approx(2 / 7, abs=1e-12)
    assert control.variance == pytest.approx(float(Fraction(17, 4802)), abs=1e-12)
    # Treatment: R_t = 7/16, sum e^2 = 0.5078125, mu_d = 3.2 -> Var = 0.5078125 / 256 = 65/32768.
    treatment = ratio_of(TREATMENT_USERS)
    assert treatment.ratio == pytest.approx(7 / 16, abs=1e-12)
    assert treatment.variance == pytest.approx(65 / 32768, abs=1e-12)


def test_moment_formula_equals_linearisation_on_random_data():
    rng = np.random.default_rng(1)
    d = 1 + rng.poisson(5, size=500)
    m = rng.binomial(d, rng.beta(1, 9, size=500))
    stat = ratio_of(list(zip(m, d, strict=True)))
    r = m.sum() / d.sum()
    linearised = np.mean((m - r * d) ** 2) / d.mean() ** 2 / d.size
    assert stat.variance == pytest.approx(linearised, rel=1e-10)


def test_addition_pools_disjoint_groups():
    a, b = ratio_of(CONTROL_USERS), ratio_of(TREATMENT_USERS)
    both = ratio_of(CONTROL_USERS + TREATMENT_USERS)
    total = a + b
    for name in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md"):
        assert getattr(total, name) == pytest.approx(getattr(both, name))
    assert ProportionStatistic(10, 3) + ProportionStatistic(5, 2) == ProportionStatistic(15, 5)
    assert SampleMeanStatistic(2, 3, 5) + SampleMeanStatistic(1, 1, 1) == SampleMeanStatistic(3, 4, 6)


def test_one_impression_per_user_is_a_proportion():
    stat = RatioStatistic(n=1000, sum_m=120, sum_d=1000, sum_m2=120, sum_d2=1000, sum_md=120)
    prop = ProportionStatistic(1000, 120)
    assert stat.ratio == pytest.approx(prop.mean)
    assert stat.variance == pytest.approx(prop.variance / 1000, rel=1e-12)


def test_arrays_are_elementwise():
    stats = [ratio_of(CONTROL_USERS), ratio_of(TREATMENT_USERS)]
    stacked = RatioStatistic(*(np.array([getattr(s, f) for s in stats])
                               for f in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md")))
    np.testing.assert_allclose(stacked.variance, [s.variance for s in stats], rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": -1, "sum_m": 0, "sum_d": 0, "sum_m2": 0, "sum_d2": 0, "sum_md": 0}, "n must be"),
    ({"n": 2, "sum_m": 5, "sum_d": 3, "sum_m2": 25, "sum_d2": 9, "sum_md": 15}, "more clicks than impressions"),
    ({"n": 2, "sum_m": 1, "sum_d": 3, "sum_m2": 1, "sum_d2": 5, "sum_md": 9}, "not the moments"),
])
def test_validation_rejects_impossible_sums(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RatioStatistic(**kwargs)


def test_empty_arm_gives_nan_not_an_exception():
    empty = RatioStatistic(0, 0, 0, 0, 0, 0)
    assert np.isnan(empty.ratio) and np.isnan(empty.variance)
    with pytest.raises(ValueError):
        ProportionStatistic(3, 4)
