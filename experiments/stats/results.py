"""The report's types: what ``report.analyse`` returns, and their JSON (``to_dict``) and CSV (``to_rows``) shapes.

One set of frozen dataclasses serves the API, the dashboard and the CSV export, so the three can
never disagree. The JSON shape is documented for the OpenAPI schema in
experiments/dashboard/schema.py: a field added here needs a line there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from experiments.stats.frequentist import TestResult


def num(x) -> float | None:
    """A finite float, or None for nan and infinity (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def json_safe(value):
    """The value with numpy scalars as Python numbers and nan/inf as None, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass(frozen=True)
class VariantRow:
    """One line of the variant table (control's comparison fields are None)."""

    key: str
    name: str
    is_control: bool
    weight: float
    users: int
    impressions: int
    clicks: int
    ctr: float | None
    ctr_ci_lower: float | None
    ctr_ci_upper: float | None
    lift: float | None = None  # relative, R_t / R_c - 1
    lift_ci_lower: float | None = None  # fixed-horizon 95% CI (delta method)
    lift_ci_upper: float | None = None
    absolute_difference: float | None = None  # R_t - R_c, with its fixed-horizon 95% CI (delta method)
    absolute_ci_lower: float | None = None
    absolute_ci_upper: float | None = None
    p_value: float | None = None  # delta method, Holm-adjusted when there are > 2 arms
    always_valid_p_value: float | None = None  # running minimum over the days, Holm-adjusted
    always_valid_ci_lower: float | None = None  # confidence sequence at this look
    always_valid_ci_upper: float | None = None
    naive_p_value: float | None = None  # per-impression z-test, for contrast only
    chance_to_win: float | None = None
    error: str | None = None

    @classmethod
    def csv_header(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_row(self) -> list:
        """The CSV line: every field, missing values as empty cells."""
        return ["" if getattr(self, c) is None else getattr(self, c) for c in self.csv_header()]


@dataclass(frozen=True)
class PowerRow:
    key: str
    mde: float | None
    mde_sequential: float | None
    power_at_target: float | None
    target_effect: float
    days_to_decision: int | None
    new_users_per_day: float
    time_to_decision: str  # in words: "decided", "now", "about 3 days", "no new users lately", "more than a year"


@dataclass(frozen=True)
class Estimate:
    effect: float | None
    standard_error: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    error: str | None = None

    @classmethod
    def of(cls, result: TestResult, p_value: float | None = None) -> Estimate:
        """A test's result, with the p-value replaced (e.g. by the Holm-adjusted one) when given."""
        return cls(num(result.effect), num(result.standard_error), num(result.ci_lower), num(result.ci_upper),
                   num(result.p_value if p_value is None else p_value), result.error_message)


@dataclass(frozen=True)
class ComparisonOut:
    """Every test of one treatment against control, in full (the variant table shows the headline ones)."""

    key: str
    relative: Estimate  # lift, delta method, fixed horizon; p Holm-adjusted
    absolute: Estimate  # CTR difference, delta method, fixed horizon
    sequential: Estimate  # lift with the confidence sequence; p = always-valid (running min, Holm-adjusted)
    naive: Estimate  # per-impression two-proportion z-test, for contrast only
    chance_to_win: float | None
    significant: bool  # the verdict calls a winner or loser (outcome win/loss): always-valid p < alpha, enough users
    outcome: str  # verdict.Outcome of this arm


@dataclass(frozen=True)
class Srm:
    p_value: float
    flagged: bool
    message: str
    observed: list[int]
    expected: list[float]


@dataclass(frozen=True)
class MetricOut:
    """One metric of the registry as this experiment uses it, with its winsorisation (pooled over the arms)."""

    key: str
    label: str
    direction: str  # metrics.Direction
    role: str  # decision.Role: success, guardrail, secondary
    margin: float  # guardrails' non-inferiority margin (relative lift in the worse direction); 0 otherwise
    winsor_percentile: float | None  # per-user numerators capped at this pooled percentile (None: off)
    cap: float | None  # the cap it gave on the post-period numerator
    users_capped: int
    pre_cap: float | None  # the cap on the pre-period numerator (None without pre data)
    values: dict[str, float | None]  # arm key -> the metric's (winsorised) value


@dataclass(frozen=True)
class MetricComparisonOut:
    """One metric, one treatment against control: relative lift raw and CUPED-adjusted (fixed horizon)."""

    metric: str
    key: str  # the treatment arm
    raw: Estimate
    cuped: Estimate  # equals raw when no user has pre-period data
    variance_reduction: float | None  # 1 - Var(cuped) / Var(raw)
    theta: list[float]  # CUPED coefficients: on the pre-period ratio, on the has-pre indicator
    users_with_pre: int  # both arms


@dataclass(frozen=True)
class GroupSequentialOut:
    """The group-sequential test of one treatment's CTR over the daily looks: z path and two-sided boundary."""

    key: str
    metric: str
    max_users: float  # planned, both arms
    spending: str
    information: list[float]  # users / max_users at each look
    z: list[float | None]
    boundary: list[float | None]  # |z| >= boundary rejects
    crossed_at: int | None  # index of the first look that crossed
    significant: bool
    finished: bool  # all alpha spent (planned size reached or experiment stopped)


@dataclass(frozen=True)
class DecisionOut:
    """The risk-aware ship decision for one treatment (decision.py), in words."""

    key: str
    decision: str  # decision.Decision: ship, worse, guardrail, not_better, not_enough_data
    ship: bool
    text: str
    blocking: list[str]  # metric keys that block
    test: str  # "group_sequential" (planned size) or "always_valid"


# Keys present only when the per-user listening columns were given: without them the JSON is today's.
OPTIONAL_KEYS = ("metrics", "metric_comparisons", "group_sequential", "decisions")


@dataclass(frozen=True)
class ExperimentResults:
    experiment_id: int
    name: str
    hypothesis: str
    status: str
    started_at: str | None
    age_days: float | None
    variants: list[VariantRow]
    comparisons: list[ComparisonOut]
    srm: Srm
    power: list[PowerRow]
    verdict: str
    outcome: str  # verdict.Outcome of the experiment, for styling the verdict
    # Charts' data: series[key] -> {"day": [...], "users", "ctr", "ctr_lower", "ctr_upper"} per variant;
    # lift_series[key] -> {"day", "lift", "ci_lower", "ci_upper", "cs_lower", "cs_upper", "p_value",
    # "always_valid_p", "mde", "mde_sequential"} per treatment.
    series: dict[str, dict[str, list]]
    lift_series: dict[str, dict[str, list]]
    positions: dict[str, dict[str, list]]  # key -> {"position", "impressions", "clicks", "ctr"}
    histogram: dict[str, object]  # {"edges": [...], "counts": {key: [...]}}
    config: dict[str, float]
    computed_at: str
    analysis_seconds: float = field(default=0.0)
    metrics: list[MetricOut] | None = None
    metric_comparisons: list[MetricComparisonOut] | None = None
    group_sequential: list[GroupSequentialOut] | None = None
    decisions: list[DecisionOut] | None = None

    def to_dict(self) -> dict:
        """JSON-safe: nan and inf become None. The listening metrics' keys appear only when computed."""
        data = json_safe(asdict(self))
        for key in OPTIONAL_KEYS:
            if data[key] is None:
                del data[key]
        return data

    def to_rows(self) -> list[list]:
        """The variant table as CSV rows (header first)."""
        return [VariantRow.csv_header(), *(v.to_row() for v in self.variants)]


@dataclass(frozen=True)
class ExperimentSummary:
    """One line of the experiments list."""

    experiment_id: int
    name: str
    status: str
    age_days: float | None
    users: int
    verdict: str
    outcome: str
