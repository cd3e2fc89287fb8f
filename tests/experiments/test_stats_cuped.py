"""CUPED for ratio metrics: exact reductions to the delta method, the linearised form, and simulated users.

Figures printed with ``-s`` go into docs/statistics.md.
"""

import numpy as np
import pytest

from experiments.stats.cuped import CupedRatioTest, PrePostRatioStatistic, pooled_theta
from experiments.stats.frequentist import DifferenceType, FrequentistConfig, RatioZTest
from tests.experiments.stats_fixtures import simulate_listening

ABSOLUTE = FrequentistConfig(difference_type=DifferenceType.ABSOLUTE)
RELATIVE = FrequentistConfig(difference_type=DifferenceType.RELATIVE)
EXPERIMENTS, USERS = 4000, 1000


def statistic(users: dict, has_pre: bool = True) -> PrePostRatioStatistic:
    if not has_pre:
        return PrePostRatioStatistic.from_units(users["clicks"], users["impressions"])
    return PrePostRatioStatistic.from_units(users["clicks"], users["impressions"], users["pre_clicks"],
                                            users["pre_impressions"], users["pre_impressions"] > 0)


def linearised(users: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = (m - R d)/mean d and x = (m' - R' d')/mean d' per user (Deng et al. 2013, appendix B), and h."""
    m, d, mx, dx = (users[k] for k in ("clicks", "impressions", "pre_clicks", "pre_impressions"))
    y = (m - m.sum() / d.sum() * d) / d.mean()
    x = (mx - mx.sum() / dx.sum() * dx) / dx.mean()
    return y, x, (dx > 0).astype(float)


def cov(a, b):
    return np.mean(a * b) - a.mean() * b.mean()


@pytest.fixture(scope="module")
def one_pair():
    rng = np.random.default_rng(24)
    return simulate_listening(rng, 6000, pre_share=0.7), simulate_listening(rng, 5000, ctr_lift=0.05, pre_share=0.7)


@pytest.fixture(scope="module")
def aa_batch():
    rng = np.random.default_rng(20261205)
    arms = [simulate_listening(rng, (EXPERIMENTS, USERS), listening=False) for _ in range(2)]
    return CupedRatioTest(statistic(arms[0]), statistic(arms[1]), ABSOLUTE).compute_result()


def test_without_pre_data_it_is_todays_delta_method_test_exactly(one_pair):
    control, treatment = (statistic(u, has_pre=False) for u in one_pair)
    for config in (ABSOLUTE, RELATIVE):
        result = CupedRatioTest(control, treatment, config).compute_result()
        today = RatioZTest(control.post(), treatment.post(), config).compute_result()
        assert result.adjusted == today and result.raw == today
        assert result.users_with_pre == 0 and result.variance_reduction == 0


def test_pre_data_of_zero_users_in_a_batch_leaves_their_rows_unadjusted(one_pair):
    with_pre, without = statistic(one_pair[0]), statistic(one_pair[0], has_pre=False)
    stack = PrePostRatioStatistic(np.array([with_pre.n, without.n]), np.stack([with_pre.sums, without.sums]),
                                  np.stack([with_pre.products, without.products]))
    other = statistic(one_pair[1], has_pre=False)
    twice = PrePostRatioStatistic(np.array([other.n] * 2), np.stack([other.sums] * 2),
                                  np.stack([other.products] * 2))
    batch = CupedRatioTest(stack, twice, RELATIVE).compute_result()
    today = RatioZTest(without.post(), other.post(), RELATIVE).compute_result()
    assert batch.adjusted.effect[1] == today.effect and batch.adjusted.p_value[1] == today.p_value


def test_theta_and_variance_agree_with_the_linearised_form(one_pair):
    """Everyone with pre data: theta = sum_arms cov(y, x) / sum_arms var(x); Var = sum_arms var(y - theta x)/n."""
    rng = np.random.default_rng(5)
    control, treatment = simulate_listening(rng, 4000), simulate_listening(rng, 4500, ctr_lift=0.1)
    (yc, xc, _), (yt, xt, _) = linearised(control), linearised(treatment)
    theta = (cov(yc, xc) + cov(yt, xt)) / (cov(xc, xc) + cov(xt, xt))
    result = CupedRatioTest(statistic(control), statistic(treatment), ABSOLUTE).compute_result()
    assert result.theta[0] == pytest.approx(theta, abs=1e-9) and result.theta[1] == 0
    variance = cov(yc - theta * xc, yc - theta * xc) / yc.size + cov(yt - theta * xt, yt - theta * xt) / yt.size
    assert result.adjusted.standard_error**2 == pytest.approx(variance, rel=1e-9)
    r = lambda u, m, d: u[m].sum() / u[d].sum()  # noqa: E731
    expected = (r(treatment, "clicks", "impressions") - theta * r(treatment, "pre_clicks", "pre_impressions")
                - r(control, "clicks", "impressions") + theta * r(control, "pre_clicks", "pre_impressions"))
    assert result.adjusted.effect == pytest.approx(expected, abs=1e-12)


def test_with_new_users_the_has_pre_indicator_is_a_second_regressor(one_pair):
    """Pooled least squares of y on (x, h) over the arms' centred moments gives the two thetas."""
    control, treatment = one_pair
    (yc, xc, hc), (yt, xt, ht) = linearised(control), linearised(treatment)
    xx = sum(np.array([[cov(x, x), cov(x, h)], [cov(h, x), cov(h, h)]]) for x, h in ((xc, hc), (xt, ht)))
    xy = sum(np.array([cov(x, y), cov(h, y)]) for x, h, y in ((xc, hc, yc), (xt, ht, yt)))
    theta = np.linalg.solve(xx, xy)
    np.testing.assert_allclose(pooled_theta(statistic(control), statistic(treatment)), theta, rtol=1e-9, atol=1e-12)
    result = CupedRatioTest(statistic(control), statistic(treatment), ABSOLUTE).compute_result()
    residual = [(y - theta[0] * x - theta[1] * h) for y, x, h in ((yc, xc, hc), (yt, xt, ht))]
    variance = sum(cov(e, e) / e.size for e in residual)
    assert result.adjusted.standard_error**2 == pytest.approx(variance, rel=1e-9)


def test_relative_lift_keeps_the_unadjusted_control_mean(one_pair):
    control, treatment = statistic(one_pair[0]), statistic(one_pair[1])
    absolute = CupedRatioTest(control, treatment, ABSOLUTE).compute_result()
    relative = CupedRatioTest(control, treatment, RELATIVE).compute_result()
    assert relative.adjusted.effect == pytest.approx(absolute.adjusted.effect / control.post().ratio, rel=1e-12)
    # The variance: the gradient of (A_t - A_c) / R_c by finite differences of the means, against Lambda.
    eps = 1e-7

    def lift(mu_c, mu_t):
        def value(mu, theta):
            pre = mu[2] / mu[3]
            return mu[0] / mu[1] - theta[0] * pre - theta[1] * mu[4]
        theta = relative.theta
        return (value(mu_t, theta) - value(mu_c, theta)) / (mu_c[0] / mu_c[1])

    mu_c, mu_t = control.means, treatment.means
    grad_c = np.array([(lift(mu_c + eps * np.eye(5)[i], mu_t) - lift(mu_c - eps * np.eye(5)[i], mu_t)) / (2 * eps)
                       for i in range(5)])
    grad_t = np.array([(lift(mu_c, mu_t + eps * np.eye(5)[i]) - lift(mu_c, mu_t - eps * np.eye(5)[i])) / (2 * eps)
                       for i in range(5)])
    variance = grad_c @ control.covariance @ grad_c / control.n + grad_t @ treatment.covariance @ grad_t / treatment.n
    assert relative.adjusted.standard_error**2 == pytest.approx(variance, rel=1e-6)


def test_a_a_false_positive_rate_is_nominal(aa_batch):
    fpr_raw, fpr = np.mean(aa_batch.raw.p_value < 0.05), np.mean(aa_batch.adjusted.p_value < 0.05)
    print(f"\nA/A over {EXPERIMENTS} experiments x {USERS} users/arm: CUPED FPR {fpr:.2%} (raw {fpr_raw:.2%})")
    assert 0.04 <= fpr <= 0.06
    assert 0.45 <= np.mean(aa_batch.adjusted.p_value < 0.5) <= 0.55


def test_variance_reduction_is_rho_squared_and_large_when_activity_persists(aa_batch):
    big = simulate_listening(np.random.default_rng(9), 1_000_000, listening=False)
    y, x, _ = linearised(big)
    rho2 = np.corrcoef(y, x)[0, 1] ** 2
    measured = 1 - np.var(aa_batch.adjusted.effect) / np.var(aa_batch.raw.effect)
    reported = np.mean(aa_batch.variance_reduction)
    print(f"\nCUPED on CTR, activity persisting: rho^2 = {rho2:.3f}, variance reduction measured over {EXPERIMENTS} "
          f"experiments {measured:.3f}, reported per experiment (mean) {reported:.3f}")
    assert abs(measured - rho2) <= 0.02
    assert measured >= 0.45


def test_new_users_without_pre_data_still_gain_and_stay_unbiased():
    rng = np.random.default_rng(77)
    control = simulate_listening(rng, (1000, 1000), pre_share=0.7, listening=False)
    treatment = simulate_listening(rng, (1000, 1000), ctr_lift=0.1, pre_share=0.7, listening=False)
    result = CupedRatioTest(statistic(control), statistic(treatment), RELATIVE).compute_result()
    measured = 1 - np.var(result.adjusted.effect) / np.var(result.raw.effect)
    print(f"\nCUPED with 30% new users: variance reduction {measured:.3f}; mean lift raw "
          f"{np.mean(result.raw.effect):.4f}, CUPED {np.mean(result.adjusted.effect):.4f} (true 0.1)")
    assert measured > 0.25
    assert np.mean(result.adjusted.effect) == pytest.approx(0.1, abs=0.005)
    coverage = np.mean((result.adjusted.ci_lower <= 0.1) & (result.adjusted.ci_upper >= 0.1))
    assert 0.93 <= coverage <= 0.97
