"""Simulated experiments with clustered users: error rates and power of the tests we ship.

Figures printed with ``-s`` go into the README (docs: /work/notes/stats.md).
"""

import numpy as np
import pytest

from experiments.stats.comparisons import AnalysisConfig
from experiments.stats.frequentist import RatioZTest, naive_impression_ztest, normal_test, relative_difference
from experiments.stats.sequential import always_valid_p_value, running_minimum
from tests.experiments.stats_fixtures import simulate_daily, simulate_final

ALPHA = 0.05
A_A_EXPERIMENTS = 4000
DAILY_EXPERIMENTS = 1000


@pytest.fixture(scope="module")
def aa_final():
    rng = np.random.default_rng(20261125)
    return simulate_final(rng, A_A_EXPERIMENTS, 1000), simulate_final(rng, A_A_EXPERIMENTS, 1000)


@pytest.fixture(scope="module")
def aa_daily():
    rng = np.random.default_rng(7)
    return simulate_daily(rng, DAILY_EXPERIMENTS, 1000), simulate_daily(rng, DAILY_EXPERIMENTS, 1000)


def sequential_p_after_daily_looks(control, treatment, n_star: float) -> np.ndarray:
    lift, variance = relative_difference(control, treatment)
    p = always_valid_p_value(lift, variance, control.n + treatment.n, ALPHA, n_star)
    return running_minimum(p, axis=1)[:, -1]


def test_delta_method_false_positive_rate_is_nominal(aa_final):
    control, treatment = aa_final
    p = RatioZTest(control, treatment).compute_result().p_value
    fpr = np.mean(p < ALPHA)
    print(f"\nA/A delta-method FPR over {A_A_EXPERIMENTS} experiments: {fpr:.2%}")
    assert 0.04 <= fpr <= 0.06
    # p-values of a valid test are uniform under the null: check the middle of the distribution too.
    assert 0.45 <= np.mean(p < 0.5) <= 0.55


def test_naive_per_impression_test_inflates_false_positives(aa_final):
    control, treatment = aa_final
    naive = naive_impression_ztest(control.sum_m, control.sum_d, treatment.sum_m, treatment.sum_d).p_value
    fpr = np.mean(naive < ALPHA)
    print(f"\nA/A naive per-impression FPR: {fpr:.2%}")
    assert fpr > 0.15


def test_peeking_daily_at_a_fixed_horizon_p_value_inflates_false_positives(aa_daily):
    control, treatment = aa_daily
    lift, variance = relative_difference(control, treatment)
    p = normal_test(lift, variance, ALPHA).p_value
    at_end, any_day = np.mean(p[:, -1] < ALPHA), np.mean((p < ALPHA).any(axis=1))
    print(f"\nA/A fixed-horizon test: FPR at day 14 {at_end:.2%}, stopping at the first p<0.05 {any_day:.2%}")
    assert 0.03 <= at_end <= 0.07
    assert any_day > 0.12


@pytest.mark.parametrize("n_star", [AnalysisConfig().n_star, 2000])
def test_sequential_test_stays_valid_under_daily_peeking(aa_daily, n_star):
    control, treatment = aa_daily
    fpr = np.mean(sequential_p_after_daily_looks(control, treatment, n_star) < ALPHA)
    print(f"\nA/A always-valid FPR peeking daily for 14 days (n_star={n_star:g}): {fpr:.2%}")
    assert fpr <= ALPHA


def test_a_true_lift_is_found():
    rng = np.random.default_rng(3)
    experiments, users, lift = 400, 3000, 0.3
    control = simulate_daily(rng, experiments, users)
    treatment = simulate_daily(rng, experiments, users, lift=lift)
    final_c = type(control)(*(getattr(control, f)[:, -1] for f in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2",
                                                                   "sum_md")))
    final_t = type(treatment)(*(getattr(treatment, f)[:, -1] for f in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2",
                                                                     "sum_md")))
    fixed = RatioZTest(final_c, final_t).compute_result()
    power_fixed = np.mean((fixed.p_value < ALPHA) & (fixed.effect > 0))
    power_seq = np.mean(sequential_p_after_daily_looks(control, treatment, AnalysisConfig().n_star) < ALPHA)
    coverage = np.mean((fixed.ci_lower <= lift) & (lift <= fixed.ci_upper))
    print(f"\nPower for a +{lift:.0%} lift, {users} users/arm over 14 days: fixed-horizon {power_fixed:.1%}, "
          f"always-valid (daily peeks) {power_seq:.1%}; 95% CI coverage of the true lift {coverage:.1%}")
    assert power_fixed >= 0.9
    assert power_seq >= 0.8
    assert 0.91 <= coverage <= 0.98
