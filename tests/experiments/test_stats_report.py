"""Comparisons across arms, the plain-words verdict and the time-series composition."""

import re

import numpy as np
import pytest

from experiments.stats.comparisons import AnalysisConfig, Arm, compare_arms, cumulative_series, srm_of
from experiments.stats.statistics import RatioStatistic
from experiments.stats.verdict import experiment_verdict
from tests.experiments.stats_fixtures import simulate_daily, simulate_final


def arm(key, stat, control=False, weight=1.0):
    return Arm(key=key, name=key.upper(), weight=weight, is_control=control, statistic=stat)


def one(stat: RatioStatistic, i: int = 0) -> RatioStatistic:
    return RatioStatistic(*(float(np.ravel(getattr(stat, f))[i]) for f in ("n", "sum_m", "sum_d", "sum_m2",
                                                                           "sum_d2", "sum_md")))


def verdict_for(arms, new_users_per_day=1000.0):
    config = AnalysisConfig()
    comparisons = compare_arms(arms, config, new_users_per_day=new_users_per_day)
    return comparisons, experiment_verdict(arms, comparisons, srm_of(arms), config).text


def test_clear_winner_is_called_with_lift_ci_and_p():
    rng = np.random.default_rng(1)
    arms = [arm("a", one(simulate_final(rng, 1, 20_000)), control=True),
            arm("b", one(simulate_final(rng, 1, 20_000, lift=0.3)))]
    comparisons, verdict = verdict_for(arms)
    seq = comparisons[0].sequential
    assert seq.p_value < 0.05 and seq.ci_lower > 0
    pattern = r"B beats A: \+\d+\.\d% CTR, 95% CI \+\d+\.\d% to \+\d+\.\d%, always-valid p (= [\d.e-]+|< 0.001)"
    assert re.fullmatch(pattern, verdict), verdict
    assert f"{seq.effect * 100:+.1f}%" in verdict
    assert comparisons[0].chance_to_win > 0.99


def test_clear_loser_is_called():
    rng = np.random.default_rng(2)
    arms = [arm("a", one(simulate_final(rng, 1, 20_000)), control=True),
            arm("b", one(simulate_final(rng, 1, 20_000, lift=-0.3)))]
    assert verdict_for(arms)[1].startswith("B loses to A: -")


def test_undecided_experiment_says_how_many_more_days():
    rng = np.random.default_rng(3)
    arms = [arm("a", one(simulate_final(rng, 1, 1000)), control=True), arm("b", one(simulate_final(rng, 1, 1000)))]
    comparisons, verdict = verdict_for(arms, new_users_per_day=500)
    days = comparisons[0].power.days_to_decision
    assert days and days > 1
    assert verdict.startswith(f"not enough data yet: about {days} more days at today's traffic")


def test_undecided_without_traffic_says_why():
    rng = np.random.default_rng(3)
    arms = [arm("a", one(simulate_final(rng, 1, 1000)), control=True), arm("b", one(simulate_final(rng, 1, 1000)))]
    assert verdict_for(arms, new_users_per_day=0)[1].startswith("not enough data yet (no new users lately): B vs A: ")
    assert verdict_for(arms, new_users_per_day=1)[1].startswith(
        "not enough data yet (more than a year at today's traffic to detect a 5% lift): B vs A: ")


def test_too_few_users_and_srm():
    rng = np.random.default_rng(4)
    small = [arm("a", one(simulate_final(rng, 1, 50)), control=True), arm("b", one(simulate_final(rng, 1, 50)))]
    assert "fewer than 100 users" in verdict_for(small)[1]
    skewed = [arm("a", one(simulate_final(rng, 1, 5000)), control=True), arm("b", one(simulate_final(rng, 1, 4000)))]
    assert verdict_for(skewed)[1].startswith("do not trust these results: sample ratio mismatch")
    empty = RatioStatistic(0, 0, 0, 0, 0, 0)
    assert verdict_for([arm("a", empty, control=True), arm("b", empty)])[1] == "no data yet"


def test_three_arms_are_holm_adjusted():
    rng = np.random.default_rng(5)
    arms = [arm("a", one(simulate_final(rng, 1, 3000)), control=True),
            arm("b", one(simulate_final(rng, 1, 3000, lift=0.1))), arm("c", one(simulate_final(rng, 1, 3000)))]
    comparisons, verdict = verdict_for(arms)
    assert [c.key for c in comparisons] == ["b", "c"]
    for c in comparisons:
        assert c.p_value_adjusted >= c.relative.p_value
        assert c.always_valid_p_adjusted >= c.sequential.p_value
    assert min(c.p_value_adjusted for c in comparisons) == pytest.approx(
        2 * min(c.relative.p_value for c in comparisons))
    assert verdict.count(";") == 1


def test_cumulative_series_runs_over_days():
    rng = np.random.default_rng(6)
    control, treatment = (one_series(simulate_daily(rng, 1, 2000)), one_series(simulate_daily(rng, 1, 2000, lift=0.2)))
    series = cumulative_series(control, treatment, AnalysisConfig())
    assert series["lift"].shape == (14,)
    assert np.all(np.diff(series["always_valid_p"]) <= 0)
    assert np.all(np.diff(series["cs_lower"]) >= 0) and np.all(np.diff(series["cs_upper"]) <= 0)
    # The confidence sequence is wider than the fixed-horizon interval on every day.
    assert np.all(series["cs_upper"] - series["cs_lower"] >= series["ci_upper"] - series["ci_lower"])


def one_series(stat: RatioStatistic) -> RatioStatistic:
    return RatioStatistic(*(getattr(stat, f)[0] for f in ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md")))


def test_fold_in_takes_the_running_minimum_and_intersection():
    from experiments.stats.comparisons import SequentialState, fold_in
    from experiments.stats.frequentist import TestResult

    today = TestResult(effect=0.05, standard_error=0.02, ci_lower=0.01, ci_upper=0.09, p_value=0.04)
    folded = fold_in(today, SequentialState(p_value=0.01, ci_lower=0.02, ci_upper=0.12))
    assert (folded.p_value, folded.ci_lower, folded.ci_upper) == (0.01, 0.02, 0.09)
    assert fold_in(today, None) is today
    # Disjoint intervals: the effect moved; keep today's interval and say so.
    moved = fold_in(today, SequentialState(p_value=0.001, ci_lower=0.2, ci_upper=0.3))
    assert (moved.ci_lower, moved.ci_upper) == (0.01, 0.09) and "changed over time" in moved.error_message
