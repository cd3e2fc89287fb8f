"""``report.analyse`` with per-user listening columns: every metric raw and CUPED, the GST and the decision.

Without the columns the report is today's, key for key (test_stats_analyse.py keeps its figures).
"""

from dataclasses import replace

import numpy as np
import pytest

from experiments.stats.aggregates import AggregateRows
from experiments.stats.cuped import CupedRatioTest, PrePostRatioStatistic
from experiments.stats.frequentist import FrequentistConfig
from experiments.stats.metric_analysis import ExperimentPlan, Guardrail
from experiments.stats.metrics import METRICS, UserColumns, metric_data, percentile_cap
from experiments.stats.report import analyse
from experiments.stats.statistics import MeanRatioStatistic
from tests.experiments.stats_fixtures import simulate_listening
from tests.experiments.test_stats_analyse import ARMS, INFO, simulate

TODAY_KEYS = {"experiment_id", "name", "hypothesis", "status", "started_at", "age_days", "variants", "comparisons",
              "srm", "power", "verdict", "outcome", "series", "lift_series", "positions", "histogram", "config",
              "computed_at", "analysis_seconds"}


def columns(users: dict) -> UserColumns:
    return UserColumns(**users)


@pytest.fixture(scope="module")
def listening():
    rng = np.random.default_rng(8)
    rows, _ = simulate(rng, {11: 4000, 12: 4000}, {12: 0.3})
    users = {11: columns(simulate_listening(rng, 4000)), 12: columns(simulate_listening(rng, 4000, ctr_lift=0.3))}
    return replace(rows, user_columns=users)


def test_without_columns_the_json_keys_are_todays():
    rows, _ = simulate(np.random.default_rng(1), {11: 500, 12: 500}, {})
    assert set(analyse(INFO, ARMS, rows).to_dict()) == TODAY_KEYS


def test_every_metric_raw_and_cuped(listening):
    results = analyse(INFO, ARMS, listening)
    data = results.to_dict()
    assert set(data) == TODAY_KEYS | {"metrics", "metric_comparisons", "group_sequential", "decisions"}
    assert [m["key"] for m in data["metrics"]] == ["ctr", "stream_rate", "skip_rate", "seconds_per_click"]
    assert [m["role"] for m in data["metrics"]] == ["success", "secondary", "guardrail", "guardrail"]
    by_metric = {c.metric: c for c in results.metric_comparisons}
    # The report's figures are the core's on the same winsorised statistics.
    stats = metric_data(METRICS["seconds_per_click"], listening.user_columns).statistics
    expected = CupedRatioTest(stats[11], stats[12], FrequentistConfig(), MeanRatioStatistic).compute_result()
    got = by_metric["seconds_per_click"]
    assert (got.raw.effect, got.cuped.effect) == pytest.approx((expected.raw.effect, expected.adjusted.effect))
    assert by_metric["ctr"].variance_reduction > 0.3 and by_metric["ctr"].users_with_pre == 8000
    assert by_metric["ctr"].cuped.standard_error < by_metric["ctr"].raw.standard_error
    seconds = next(m for m in results.metrics if m.key == "seconds_per_click")
    assert seconds.winsor_percentile == 99.9 and seconds.users_capped > 0
    assert seconds.values["a"] > 30  # seconds per click: the numerator exceeds the denominator
    assert results.group_sequential == []  # no planned size: the always-valid test decides
    decision = results.decisions[0]
    assert decision.test == "always_valid" and decision.key == "b"
    # CTR is better, but at 4,000 users/arm the always-valid interval of the skip rate is still too wide to
    # rule out a 5 % deterioration: the rule waits, and says which guardrail it waits for.
    assert decision.decision == "guardrail" and decision.blocking == ["skip_rate"]
    assert decision.text.startswith("do not ship b yet: CTR +") and "guardrail skip rate" in decision.text


def test_a_planned_size_brings_the_group_sequential_test(listening):
    plan = ExperimentPlan(planned_users=8000)
    results = analyse(replace(INFO, status="stopped"), ARMS, listening, plan=plan)
    gst = results.group_sequential[0]
    assert gst.metric == "ctr" and gst.finished and gst.significant
    assert len(gst.z) == len(gst.boundary) == len(gst.information) and gst.information[-1] == pytest.approx(1.0)
    assert abs(gst.z[gst.crossed_at]) >= gst.boundary[gst.crossed_at]
    assert results.decisions[0].test == "group_sequential" and results.decisions[0].ship
    print(f"\n{results.decisions[0].text}")


def test_a_guardrail_that_suffers_blocks_and_is_named():
    rng = np.random.default_rng(9)
    rows, _ = simulate(rng, {11: 3000, 12: 3000}, {12: 0.3})
    users = {11: columns(simulate_listening(rng, 3000)),
             12: columns(simulate_listening(rng, 3000, ctr_lift=0.3, skip_lift=0.5))}
    results = analyse(INFO, ARMS, replace(rows, user_columns=users),
                      plan=ExperimentPlan(guardrails=(Guardrail("skip_rate", 0.02),)))
    decision = results.decisions[0]
    assert not decision.ship and decision.blocking == ["skip_rate"]
    assert "skip rate" in decision.text


def test_pre_columns_absent_means_no_adjustment(listening):
    bare = {k: UserColumns(**{f: getattr(c, f) for f in ("impressions", "clicks", "plays", "long_listens",
                                                           "listened_seconds", "short_plays")})
            for k, c in listening.user_columns.items()}
    results = analyse(INFO, ARMS, replace(listening, user_columns=bare))
    for c in results.metric_comparisons:
        assert c.cuped == c.raw and c.users_with_pre == 0


def test_winsorisation_caps_at_the_pooled_percentile():
    a, b = np.arange(1000.0), np.arange(1000.0, 2000.0)
    winsor = percentile_cap([a, b], 99.0)
    assert winsor.cap == pytest.approx(np.percentile(np.arange(2000.0), 99.0)) and winsor.users_capped == 20
    assert percentile_cap([a], None).cap is None
    with pytest.raises(ValueError, match="percentile"):
        percentile_cap([a], 0)
    with pytest.raises(ValueError, match="users"):
        UserColumns(impressions=np.ones(3), clicks=np.ones(2))
    stat = PrePostRatioStatistic.from_units(np.array([1.0, 50.0]), np.array([2.0, 60.0]))
    assert stat.post().ratio == pytest.approx(51 / 62)


def test_too_few_users_is_said_and_nothing_breaks():
    empty = np.zeros(0)
    names = ("impressions", "clicks", "plays", "long_listens", "listened_seconds", "short_plays")
    users = {11: UserColumns(**{n: np.array([1.0, 2.0]) if n == "impressions" else np.zeros(2) for n in names}),
             12: UserColumns(**{n: empty for n in names})}
    results = analyse(INFO, ARMS, AggregateRows([(11, 1, 0, 1), (11, 2, 0, 1)], [], user_columns=users))
    assert all(c.raw.error == "fewer than 2 users in an arm" for c in results.metric_comparisons)
    decision = results.to_dict()["decisions"][0]
    assert decision["decision"] == "not_enough_data" and not decision["ship"]
    assert decision["text"] == "not enough data yet: fewer than 100 users in an arm"
