"""The risk-aware ship rule: its error rates by Monte Carlo (1 success metric + 3 guardrails), and its words.

The Monte Carlo draws each experiment's four relative lifts from their joint normal distribution, the one
the delta-method tests themselves assume, with the covariance of the four metrics measured on simulated
listeners (``simulate_listening``: a success metric and guardrails computed from the same users are
correlated). Each test's own error rate on per-user data is checked in test_stats_cuped.py and
test_stats_simulation.py; here the question is the rule over the tests. Printed with ``-s`` for the docs.
"""

import numpy as np
import pytest

from experiments.stats.decision import (
    Decision,
    DecisionConfig,
    MetricEvidence,
    Role,
    decide,
    fixed_horizon,
    plan_users,
    ship,
)
from experiments.stats.metrics import METRICS, Direction
from tests.experiments.stats_fixtures import simulate_listening

KEYS = ["ctr", "stream_rate", "seconds_per_click", "skip_rate"]
ROLES = [Role.SUCCESS, Role.GUARDRAIL, Role.GUARDRAIL, Role.GUARDRAIL]
MARGIN = 0.05
DESIGN_LIFT = 0.10
DRAWS = 200_000


@pytest.fixture(scope="module")
def per_user_covariance() -> np.ndarray:
    """n x Cov(relative lifts) for one arm of n users: the covariance of the per-user influence values
    (m - R d) / (mean d * R) of the four metrics."""
    users = simulate_listening(np.random.default_rng(2024), 400_000)
    influence = []
    for key in KEYS:
        spec = METRICS[key]
        m, d = users[spec.numerator], users[spec.denominator]
        ratio = m.sum() / d.sum()
        influence.append((m - ratio * d) / (d.mean() * ratio))
    return np.cov(np.stack(influence), bias=True)


def planned(per_user_covariance) -> float:
    variances = 2 * np.diag(per_user_covariance)  # both arms
    return plan_users(variances, [DESIGN_LIFT, MARGIN, MARGIN, MARGIN], ROLES, DecisionConfig(), power=0.8)


def p_ship(per_user_covariance, users: float, lifts, seed: int) -> float:
    rng = np.random.default_rng(seed)
    covariance = 2 * per_user_covariance / users
    draws = rng.multivariate_normal(lifts, covariance, size=DRAWS)
    se = np.sqrt(np.diag(covariance))
    evidence = [MetricEvidence(k, k, r, METRICS[k].direction, draws[:, [i]], np.full((DRAWS, 1), se[i]),
                               MARGIN if r is Role.GUARDRAIL else 0.0)
                for i, (k, r) in enumerate(zip(KEYS, ROLES, strict=True))]
    return float(np.mean(ship(evidence, fixed_horizon)))


def test_the_rule_ships_at_the_design_and_rarely_otherwise(per_user_covariance):
    users = planned(per_user_covariance)
    # At the design: CTR +10 %; stream rate follows the clicks (+10 %), the other guardrails do not move.
    design = p_ship(per_user_covariance, users, [DESIGN_LIFT, DESIGN_LIFT, 0, 0], seed=1)
    null = p_ship(per_user_covariance, users, [0, 0, 0, 0], seed=2)
    # A guardrail exactly at its margin: skip rate 5 % worse (higher), the rest at the design.
    at_margin = p_ship(per_user_covariance, users, [DESIGN_LIFT, DESIGN_LIFT, 0, MARGIN], seed=3)
    larger_sample = p_ship(per_user_covariance, 3 * users, [DESIGN_LIFT, DESIGN_LIFT, 0, MARGIN], seed=4)
    print(f"\nRisk-aware rule, 1 success + 3 guardrails, {DRAWS:,} draws, planned {users:,.0f} users/arm: "
          f"P(ship) at the design {design:.1%}, with no CTR effect {null:.2%}, with skip rate at its margin "
          f"{at_margin:.2%} (3x the users: {larger_sample:.2%})")
    assert design >= 0.80
    assert null <= 0.05
    assert at_margin <= 0.05 and larger_sample <= 0.05


def test_the_words_name_what_blocks():
    def evidence(ctr, skip, skip_se=0.01):
        return [MetricEvidence("ctr", "CTR", Role.SUCCESS, Direction.HIGHER_IS_BETTER, ctr, 0.02),
                MetricEvidence("skip_rate", "skip rate", Role.GUARDRAIL, Direction.LOWER_IS_BETTER, skip, skip_se,
                               MARGIN),
                MetricEvidence("stream_rate", "stream rate", Role.SECONDARY, Direction.HIGHER_IS_BETTER, 0.0, 0.02)]

    shipped = decide("B", evidence(0.10, 0.0), fixed_horizon)
    assert shipped.ship and shipped.decision is Decision.SHIP
    assert shipped.text.startswith("ship B: CTR +10.0% is significantly better; guardrails non-inferior")
    blocked = decide("B", evidence(0.10, 0.04, skip_se=0.03), fixed_horizon)
    assert not blocked.ship and blocked.decision is Decision.GUARDRAIL and blocked.blocking == ("skip_rate",)
    assert "guardrail skip rate +4.0% (margin +5.0%) is not shown non-inferior" in blocked.text
    worse = decide("B", evidence(0.10, 0.08), fixed_horizon)
    assert worse.decision is Decision.WORSE and worse.text == "do not ship B: significantly worse on skip rate +8.0%"
    flat = decide("B", evidence(0.01, 0.0), fixed_horizon)
    assert flat.decision is Decision.NOT_BETTER and "not significantly better on CTR +1.0%" in flat.text
    unknown = decide("B", evidence(float("nan"), 0.0), fixed_horizon)
    assert unknown.text == "do not ship B yet: not significantly better on CTR (no estimate yet)"


def test_a_crossing_at_an_earlier_look_counts():
    path = MetricEvidence("ctr", "CTR", Role.SUCCESS, Direction.HIGHER_IS_BETTER, np.array([0.02, 0.09, 0.05]),
                          np.array([0.04, 0.03, 0.025]))
    assert bool(ship([path], lambda alpha: np.array([3.0, 2.8, 2.5])))
    assert not bool(ship([path], lambda alpha: np.array([3.0, 3.1, 2.5])))


def test_the_planner_corrects_beta_over_the_tests_that_must_all_pass():
    one = plan_users([1.0], [0.1], [Role.SUCCESS])
    assert one == pytest.approx((1.959964 + 0.841621) ** 2 / 0.01, rel=1e-6)
    with_guards = plan_users([1.0, 1.0], [0.1, 0.1], [Role.SUCCESS, Role.GUARDRAIL])
    assert with_guards == pytest.approx((1.959964 + 1.281552) ** 2 / 0.01, rel=1e-6)  # beta 0.2 / 2
