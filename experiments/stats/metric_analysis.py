"""Every metric of every treatment: raw and CUPED side by side, the group-sequential test, the ship decision.

``report.analyse`` calls ``analyse_metrics`` when the aggregate rows carry per-user columns
(``AggregateRows.user_columns``); without them the report is today's CTR report, key for key.

Which test decides:
- with a planned maximum number of users (``ExperimentPlan.planned_users``, fixed at the start from the
  power planner) the group-sequential boundaries (group_sequential.py) at the users seen so far;
- without one, the always-valid confidence sequence of sequential.py (valid whenever the page is read).
The estimate each test reads is the CUPED one at today's look (the raw one when there is no pre data). The
daily path of earlier looks exists only for the raw CTR (VariantDailyMoments); it is drawn with its
boundary, and the decision checks today's look only, which can only make it more cautious (a crossing at
an earlier look that has since fallen back is not counted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from experiments.stats.cuped import CupedRatioTest
from experiments.stats.decision import Decision, DecisionConfig, MetricEvidence, Role, decide
from experiments.stats.frequentist import DifferenceType, FrequentistConfig, TestResult, relative_difference
from experiments.stats.group_sequential import GroupSequentialDesign, Spending, group_sequential_test
from experiments.stats.metrics import DEFAULT_WINSOR_PERCENTILE, UserColumns, metric, metric_data
from experiments.stats.results import (
    DecisionOut,
    Estimate,
    GroupSequentialOut,
    MetricComparisonOut,
    MetricOut,
    num,
)
from experiments.stats.sequential import mixture_rho_squared
from experiments.stats.statistics import RatioStatistic


@dataclass(frozen=True)
class Guardrail:
    metric: str
    margin: float = 0.05  # relative lift in the worse direction still acceptable

    def __post_init__(self):
        metric(self.metric)
        if not 0 <= self.margin < 1:
            raise ValueError("a guardrail's margin is a relative lift in [0, 1)")


@dataclass(frozen=True)
class ExperimentPlan:
    """What an experiment is judged on, fixed before it starts (admin). Defaults: CTR decides; listening
    must not suffer (skip rate and listened seconds per click within 5 %); stream rate is shown."""

    primary: str = "ctr"
    secondary: tuple[str, ...] = ("stream_rate",)
    guardrails: tuple[Guardrail, ...] = (Guardrail("skip_rate"), Guardrail("seconds_per_click"))
    planned_users: float | None = None  # both arms; None: the always-valid test decides
    winsor_percentile: float | None = DEFAULT_WINSOR_PERCENTILE
    spending: Spending = Spending.OBRIEN_FLEMING
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self):
        keys = [self.primary, *self.secondary, *(g.metric for g in self.guardrails)]
        for key in keys:
            metric(key)
        if len(set(keys)) != len(keys):
            raise ValueError("a metric can have one role only")
        if self.planned_users is not None and not self.planned_users > 0:
            raise ValueError("planned_users must be > 0")

    def roles(self) -> list[tuple[str, Role, float]]:
        return ([(self.primary, Role.SUCCESS, 0.0)] + [(k, Role.SECONDARY, 0.0) for k in self.secondary]
                + [(g.metric, Role.GUARDRAIL, g.margin) for g in self.guardrails])


DEFAULT_PLAN = ExperimentPlan()


def _always_valid_critical(users: float, n_star: float, alpha: float):
    """One-sided critical z of the always-valid test at ``users``: the two-sided mixture boundary at the same
    level (conservative for one side)."""
    n_rho2 = users * mixture_rho_squared(alpha, n_star)  # the mixture tuned as sequential.py tunes it

    def critical(alpha: float) -> float:
        return float(np.sqrt(2 * (n_rho2 + 1) / n_rho2 * np.log(np.sqrt(n_rho2 + 1) / alpha)))

    return critical


@dataclass(frozen=True)
class MetricAnalysis:
    metrics: list[MetricOut]
    comparisons: list[MetricComparisonOut]
    group_sequential: list[GroupSequentialOut]
    decisions: list[DecisionOut]


def _estimate(result: TestResult) -> Estimate:
    return Estimate.of(result)


def analyse_metrics(arms: Sequence[tuple[int, str, bool]], columns: Mapping[int, UserColumns],
                    daily_users: np.ndarray | None, ctr_daily: Mapping[int, RatioStatistic] | None,
                    plan: ExperimentPlan = DEFAULT_PLAN, alpha: float = 0.05, n_star: float = 10_000,
                    final: bool = False, min_users: int = 100) -> MetricAnalysis:
    """``arms``: (id, key, is_control), control first. ``daily_users``: users of all arms at the end of each day
    (the looks; 0 for a day that is no look, e.g. too few users); ``ctr_daily``: per arm id, the cumulative CTR
    statistics per day (for the drawn z path)."""
    control_id, control_key, _ = arms[0]
    treatments = arms[1:]
    config = FrequentistConfig(alpha=alpha, difference_type=DifferenceType.RELATIVE)
    design = (GroupSequentialDesign(plan.planned_users, alpha, plan.spending)
              if plan.planned_users is not None else None)
    metrics_out, comparisons, evidence = [], [], {key: [] for _, key, _ in treatments}
    present = {a for a, _, _ in arms if a in columns}
    for key, role, margin in plan.roles():
        spec = metric(key)
        data = metric_data(spec, {a: columns[a] for a, _, _ in arms if a in present}, plan.winsor_percentile)
        if data is None or control_id not in data.statistics:
            continue
        w, pw = data.winsorisation, data.pre_winsorisation
        metrics_out.append(MetricOut(
            key, spec.label, spec.direction.value, role.value, margin, w.percentile, num(w.cap) if w.cap is not None
            else None, w.users_capped, num(pw.cap) if pw and pw.cap is not None else None,
            {k: num(data.statistics[a].post(spec.statistic_type).ratio) for a, k, _ in arms if a in data.statistics}))
        control = data.statistics[control_id]
        for arm_id, arm_key, _ in treatments:
            if arm_id not in data.statistics:
                continue
            with np.errstate(all="ignore"):
                result = CupedRatioTest(control, data.statistics[arm_id], config, spec.statistic_type).compute_result()
            comparisons.append(MetricComparisonOut(
                key, arm_key, _estimate(result.raw), _estimate(result.adjusted),
                num(result.variance_reduction), [float(x) for x in np.ravel(result.theta)],
                int(result.users_with_pre)))
            chosen = result.adjusted
            evidence[arm_key].append(MetricEvidence(key, spec.label, role, spec.direction, chosen.effect,
                                                    chosen.standard_error, margin))
    gst_out = []
    users_now = float(daily_users[-1]) if daily_users is not None and len(daily_users) else float(
        sum(columns[a].users for a in present))
    if design is not None and daily_users is not None and ctr_daily and control_id in ctr_daily:
        for arm_id, arm_key, _ in treatments:
            if arm_id not in ctr_daily:
                continue
            with np.errstate(all="ignore"):
                lift, variance = relative_difference(ctr_daily[control_id], ctr_daily[arm_id])
                z = np.asarray(lift) / np.sqrt(variance)
            gst = group_sequential_test(z, daily_users, design, final=final)
            gst_out.append(GroupSequentialOut(
                arm_key, "ctr", float(design.max_users), design.spending.value,
                [float(x) for x in gst.information], [num(x) for x in gst.z], [num(x) for x in gst.boundary],
                gst.crossed_at, gst.significant, gst.finished))
    if design is not None and users_now > 0:
        looks = _looks(daily_users, users_now)

        def critical(level: float) -> float:
            return float(design.bounds(looks, level, final=final).z[-1])
    else:
        critical = _always_valid_critical(max(users_now, 1.0), n_star, alpha)
    decisions = []
    test = "group_sequential" if design is not None else "always_valid"
    for arm_id, arm_key, _ in treatments:
        if not evidence[arm_key]:
            continue
        fewest = min(columns[a].users if a in columns else 0 for a in (control_id, arm_id))
        if fewest < min_users:
            decisions.append(DecisionOut(arm_key, Decision.NOT_ENOUGH_DATA.value, False,
                                         f"not enough data yet: fewer than {min_users} users in an arm", [], test))
            continue
        d = decide(arm_key, evidence[arm_key], critical, plan.decision)
        decisions.append(DecisionOut(arm_key, d.decision.value, d.ship, d.text, list(d.blocking), test))
    return MetricAnalysis(metrics_out, comparisons, gst_out, decisions)


def _looks(daily_users: np.ndarray | None, users_now: float) -> list[float]:
    """The looks so far: the users at the end of each day with users, today's count last."""
    looks = [float(u) for u in (daily_users if daily_users is not None else []) if u > 0]
    if not looks or looks[-1] != users_now:
        looks = [u for u in looks if u < users_now] + [users_now]
    return looks
