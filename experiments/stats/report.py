"""The one entry point of the statistics core: aggregate rows in, the whole report out.

``analyse`` is what the results page and the API show: the variant table, every test (delta
method, always-valid, naive per impression, Holm across treatments), SRM, power, the verdict
and every chart's data series. ``summarise`` is the experiments list's line: the same verdict
from the daily moments alone, without the per-user frequency table. Both take the decisions
through ``_decide``, so the list and the page cannot disagree on the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from experiments.stats.aggregates import (
    EMPTY,
    AggregateRows,
    ArmSpec,
    ExperimentInfo,
    daily_statistics,
    histogram_edges,
    last_day,
    new_users_per_day,
    position_series,
    user_statistics,
    user_statistics_from_stored,
)
from experiments.stats.comparisons import (
    DEFAULT_CONFIG,
    AnalysisConfig,
    Arm,
    Comparison,
    SequentialState,
    compare_arms,
    cumulative_series,
    srm_of,
)
from experiments.stats.frequentist import normal_test
from experiments.stats.metric_analysis import DEFAULT_PLAN, ExperimentPlan, analyse_metrics
from experiments.stats.results import (
    ComparisonOut,
    Estimate,
    ExperimentResults,
    ExperimentSummary,
    PowerRow,
    Srm,
    VariantRow,
    num,
)
from experiments.stats.srm import SrmResult
from experiments.stats.statistics import Number, RatioStatistic
from experiments.stats.verdict import Outcome, Verdict, experiment_verdict, no_control_verdict


@dataclass(frozen=True)
class _Decision:
    arms: list[Arm]  # control first
    comparisons: list[Comparison]
    srm: SrmResult
    verdict: Verdict
    lift_series: dict[str, dict[str, np.ndarray]]  # cumulative_series per treatment key


def _ordered(arms: Sequence[ArmSpec], experiment_id: int) -> list[ArmSpec]:
    """Control first (then the given order); a ValueError without a control."""
    ordered = sorted(arms, key=lambda arm: not arm.is_control)
    if not ordered or not ordered[0].is_control:
        raise ValueError(no_control_verdict(experiment_id))
    return ordered


def _decide(specs: list[ArmSpec], totals: dict[int, RatioStatistic], daily: dict[int, RatioStatistic],
            config: AnalysisConfig) -> _Decision:
    """Comparisons, SRM and verdict: today's look on ``totals``, folded into the daily looks' running state."""
    arms = [Arm(s.key, s.name or s.key, float(s.weight), s.is_control, totals.get(s.id, EMPTY)) for s in specs]
    control = specs[0]
    lift_series, so_far = {}, {}
    with np.errstate(all="ignore"):
        for spec in specs[1:]:
            if spec.id in daily and control.id in daily:
                s = cumulative_series(daily[control.id], daily[spec.id], config)
                lift_series[spec.key] = s
                so_far[spec.key] = SequentialState(float(s["always_valid_p"][-1]), float(s["cs_lower"][-1]),
                                                   float(s["cs_upper"][-1]))
        comparisons = compare_arms(arms, config, new_users_per_day=new_users_per_day(daily),
                                   sequential_so_far=so_far)
    srm = srm_of(arms)
    return _Decision(arms, comparisons, srm, experiment_verdict(arms, comparisons, srm, config), lift_series)


def _ctr_interval(stat: RatioStatistic, alpha: float) -> tuple[Number, Number, Number]:
    """CTR with its delta-method (1 - alpha) interval."""
    result = normal_test(stat.ratio, stat.variance, alpha)
    return stat.ratio, result.ci_lower, result.ci_upper


def _variant_rows(decision: _Decision, config: AnalysisConfig) -> list[VariantRow]:
    by_key = {c.key: c for c in decision.comparisons}
    rows = []
    for arm in decision.arms:
        s = arm.statistic
        with np.errstate(all="ignore"):
            ctr, low, high = _ctr_interval(s, config.alpha)
        base = dict(key=arm.key, name=arm.name, is_control=arm.is_control, weight=arm.weight, users=int(s.n),
                    impressions=int(s.sum_d), clicks=int(s.sum_m), ctr=num(ctr), ctr_ci_lower=num(low),
                    ctr_ci_upper=num(high))
        c = by_key.get(arm.key)
        if c is not None:
            base.update(lift=num(c.relative.effect), lift_ci_lower=num(c.relative.ci_lower),
                        lift_ci_upper=num(c.relative.ci_upper), absolute_difference=num(c.absolute.effect),
                        absolute_ci_lower=num(c.absolute.ci_lower), absolute_ci_upper=num(c.absolute.ci_upper),
                        p_value=num(c.p_value_adjusted), always_valid_p_value=num(c.always_valid_p_adjusted),
                        always_valid_ci_lower=num(c.sequential.ci_lower),
                        always_valid_ci_upper=num(c.sequential.ci_upper), naive_p_value=num(c.naive.p_value),
                        chance_to_win=num(c.chance_to_win), error=c.relative.error_message)
        rows.append(VariantRow(**base))
    return rows


def _series(days: list[date], daily: dict[int, RatioStatistic], specs: list[ArmSpec], decision: _Decision,
            alpha: float) -> tuple[dict, dict]:
    """The charts' daily series: CTR with its CI per arm, and the lift's series per treatment."""
    labels = [d.isoformat() for d in days]
    series = {}
    for spec in specs:
        stat = daily.get(spec.id)
        if stat is None:
            continue
        with np.errstate(all="ignore"):
            ctr, low, high = _ctr_interval(stat, alpha)
        series[spec.key] = {"day": labels, "users": np.asarray(stat.n).astype(int).tolist(),
                            "ctr": np.asarray(ctr).tolist(), "ctr_lower": np.asarray(low).tolist(),
                            "ctr_upper": np.asarray(high).tolist()}
    lift_series = {key: {"day": labels, **{k: np.asarray(a).tolist() for k, a in s.items()}}
                   for key, s in decision.lift_series.items()}
    return series, lift_series


def _hourly(rows: AggregateRows, specs: list[ArmSpec], config: AnalysisConfig) -> dict:
    """The charts' series per hour (``hourly_series``, ``hourly_lift_series``: the daily ones' fields, ``hour``
    for ``day``), for an experiment younger than three days whose daily series has a point or three."""
    hours, hourly = daily_statistics(rows.hourly, [s.id for s in specs], until=rows.hourly_until,
                                     step=timedelta(hours=1))
    labels = [h.isoformat() for h in hours]
    series = {}
    control = specs[0]
    for spec in specs:
        stat = hourly.get(spec.id)
        if stat is None:
            continue
        with np.errstate(all="ignore"):
            ctr, low, high = _ctr_interval(stat, config.alpha)
        series[spec.key] = {"hour": labels, "users": np.asarray(stat.n).astype(int).tolist(),
                            "ctr": np.asarray(ctr).tolist(), "ctr_lower": np.asarray(low).tolist(),
                            "ctr_upper": np.asarray(high).tolist()}
    lift = {}
    if control.id in hourly:
        for spec in specs[1:]:
            if spec.id in hourly:
                with np.errstate(all="ignore"):
                    s = cumulative_series(hourly[control.id], hourly[spec.id], config)
                lift[spec.key] = {"hour": labels, **{k: np.asarray(a).tolist() for k, a in s.items()}}
    return {"hourly_series": series, "hourly_lift_series": lift}


FINISHED = ("stopped", "archived")  # statuses after which no more data comes: the last look spends all alpha


def analyse(info: ExperimentInfo, arms: Sequence[ArmSpec], rows: AggregateRows,
            config: AnalysisConfig = DEFAULT_CONFIG, plan: ExperimentPlan = DEFAULT_PLAN) -> ExperimentResults:
    """The whole report of one experiment. A ValueError when there is no control arm.

    With per-user columns (``rows.user_columns``) it adds every metric of ``plan`` raw and CUPED, the
    group-sequential test when the plan has a planned size, and the ship decision (metric_analysis.py).
    """
    specs = _ordered(arms, info.experiment_id)
    ids = [s.id for s in specs]
    totals, histograms = (user_statistics_from_stored(rows.stored_moments, ids) if rows.stored_moments is not None
                          else user_statistics(rows.user_counts, ids))
    days, daily = daily_statistics(rows.daily, ids, until=rows.until)
    decision = _decide(specs, totals, daily, config)
    series, lift_series = _series(days, daily, specs, decision, config.alpha)
    verdicts = {v.key: v for v in decision.verdict.arms}
    srm = decision.srm
    extra = {}
    if rows.user_columns or rows.metric_moments:
        daily_users = None
        if daily:
            per_arm = np.array([np.asarray(daily[s.id].n) for s in specs if s.id in daily])
            # A day with fewer than min_users in an arm is no look (the normal approximation is poor there).
            daily_users = np.where(per_arm.min(axis=0) >= config.min_users, per_arm.sum(axis=0), 0.0)
        extra_analysis = analyse_metrics([(s.id, s.key, s.is_control) for s in specs], rows.user_columns,
                                         daily_users, daily, plan, config.alpha, config.n_star,
                                         final=info.status in FINISHED, min_users=config.min_users,
                                         metric_moments=rows.metric_moments)
        extra = dict(metrics=extra_analysis.metrics, metric_comparisons=extra_analysis.comparisons,
                     group_sequential=extra_analysis.group_sequential, decisions=extra_analysis.decisions)
    if rows.hourly:
        extra.update(_hourly(rows, specs, config))
    return ExperimentResults(
        experiment_id=info.experiment_id, name=info.name, hypothesis=info.hypothesis, status=info.status,
        started_at=info.started_at, age_days=info.age_days,
        variants=_variant_rows(decision, config),
        comparisons=[ComparisonOut(c.key, Estimate.of(c.relative, c.p_value_adjusted), Estimate.of(c.absolute),
                                   Estimate.of(c.sequential, c.always_valid_p_adjusted), Estimate.of(c.naive),
                                   num(c.chance_to_win), verdicts[c.key].significant, verdicts[c.key].outcome.value)
                     for c in decision.comparisons],
        srm=Srm(srm.p_value, srm.flagged, srm.message, list(srm.observed), list(srm.expected)),
        power=[PowerRow(c.key, num(c.power.mde), num(c.power.mde_sequential), num(c.power.power_at_target),
                        c.power.target_effect, c.power.days_to_decision, c.power.new_users_per_day,
                        verdicts[c.key].time_to_decision)
               for c in decision.comparisons],
        verdict=decision.verdict.text, outcome=decision.verdict.outcome.value, series=series, lift_series=lift_series,
        positions=position_series(rows.positions, specs),
        histogram={"edges": histogram_edges(), "counts": {s.key: histograms[s.id] for s in specs}},
        config={"alpha": config.alpha, "n_star": config.n_star, "power": config.power,
                "target_effect": config.target_effect},
        computed_at=info.computed_at,
        **extra,
    )


def summarise(info: ExperimentInfo, arms: Sequence[ArmSpec], daily_rows: Sequence[Sequence], until: date | None = None,
              config: AnalysisConfig = DEFAULT_CONFIG) -> ExperimentSummary:
    """Users and verdict of one experiment from its daily moments only (``AggregateRows.daily``).

    Cost: O(days x arms) numbers, whatever the number of users: the per-user frequency table, the
    per-arm CTR series, positions and histogram are not computed. The last day's cumulative moments
    are the same sums as the per-user totals (the worker writes both in one transaction), so the
    verdict is the results page's. Without a control arm the verdict says so instead of raising.
    """
    try:
        specs = _ordered(arms, info.experiment_id)
    except ValueError as error:
        return ExperimentSummary(info.experiment_id, info.name, info.status, info.age_days, 0, str(error),
                                 Outcome.CANNOT_COMPARE.value)
    _, daily = daily_statistics(daily_rows, [s.id for s in specs], until=until)
    decision = _decide(specs, last_day(daily), daily, config)
    users = int(sum(arm.statistic.n for arm in decision.arms))
    return ExperimentSummary(info.experiment_id, info.name, info.status, info.age_days, users,
                             decision.verdict.text, decision.verdict.outcome.value)
