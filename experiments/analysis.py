"""Experiment results: read the aggregate tables the worker keeps, run the statistics core, compose.

Never reads raw events. Per experiment it runs three small queries:

1. one pass over UserAggregate: per variant, the number of users with each (impressions,
   clicks) pair. The delta-method sufficient statistics (count, sums, sums of squares,
   cross-product) and the per-user CTR histogram follow exactly from that table.
2. VariantDailyMoments (one row per variant and day): the cumulative time series.
3. PositionRollup (one row per variant and position): CTR by position.

Everything else is arithmetic in ``experiments.stats`` on a few dozen numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta

import numpy as np
from django.db import connection
from django.utils import timezone
from scipy.stats import norm

from experiments.models import Experiment, PositionRollup, UserAggregate, Variant, VariantDailyMoments
from experiments.stats.report import (
    AnalysisConfig,
    Arm,
    Comparison,
    SequentialState,
    compare_arms,
    cumulative_series,
    experiment_verdict,
    srm_of,
)
from experiments.stats.statistics import RatioStatistic

HISTOGRAM_BINS = 20
DEFAULT_CONFIG = AnalysisConfig()
RATE_WINDOW_DAYS = 7  # new users per day = mean daily growth over the last week

_STAT_FIELDS = ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md")


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


@dataclass(frozen=True)
class PowerRow:
    key: str
    mde: float | None
    mde_sequential: float | None
    power_at_target: float | None
    target_effect: float
    days_to_decision: int | None
    new_users_per_day: float


@dataclass(frozen=True)
class Estimate:
    effect: float | None
    standard_error: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    error: str | None = None


@dataclass(frozen=True)
class ComparisonOut:
    """Every test of one treatment against control, in full (the variant table shows the headline ones)."""

    key: str
    relative: Estimate  # lift, delta method, fixed horizon; p Holm-adjusted
    absolute: Estimate  # CTR difference, delta method, fixed horizon
    sequential: Estimate  # lift with the confidence sequence; p = always-valid (running min, Holm-adjusted)
    naive: Estimate  # per-impression two-proportion z-test, for contrast only
    chance_to_win: float | None


def _estimate(result, p_value=None) -> Estimate:
    return Estimate(_num(result.effect), _num(result.standard_error), _num(result.ci_lower), _num(result.ci_upper),
                    _num(result.p_value if p_value is None else p_value), result.error_message)


@dataclass(frozen=True)
class Srm:
    p_value: float
    flagged: bool
    message: str
    observed: list[int]
    expected: list[float]


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
    # Charts' data: series[key] -> {"day": [...], "users", "ctr", "ctr_lower", "ctr_upper"} per variant;
    # lift_series[key] -> {"day", "lift", "ci_lower", "ci_upper", "cs_lower", "cs_upper", "p_value",
    # "always_valid_p"} per treatment.
    series: dict[str, dict[str, list]]
    lift_series: dict[str, dict[str, list]]
    positions: dict[str, dict[str, list]]  # key -> {"position", "impressions", "clicks", "ctr"}
    histogram: dict[str, object]  # {"edges": [...], "counts": {key: [...]}}
    config: dict[str, float]
    computed_at: str
    analysis_seconds: float = field(default=0.0)

    def to_dict(self) -> dict:
        """JSON-safe: nan and inf become None."""
        return _json_safe(asdict(self))


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --- queries ------------------------------------------------------------------------------

def _user_aggregate_sums(experiment_id: int) -> tuple[dict[int, RatioStatistic], dict[int, list[int]]]:
    """ONE aggregate over UserAggregate: how many users of each variant have each (impressions, clicks).

    That frequency table is the whole distribution of per-user values in a few thousand rows,
    so the sufficient statistics (count, sums, sums of squares, cross-product) and the
    histogram of per-user CTR are exact functions of it, computed in numpy. Measured on 1M
    users it is ~40% faster than asking PostgreSQL for the five sums and a ``width_bucket``
    histogram directly (one hash key per row instead of seven aggregate transitions).
    """
    table = UserAggregate._meta.db_table
    sql = f"""SELECT variant_id, impressions, clicks, count(*) FROM {table}
              WHERE experiment_id = %s AND impressions > 0 GROUP BY 1, 2, 3"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [experiment_id])
        rows = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 4)
    stats, hist = {}, {}
    for variant_id in np.unique(rows[:, 0]):
        _, d, m, w = rows[rows[:, 0] == variant_id].T
        stats[int(variant_id)] = RatioStatistic(
            n=float(w.sum()), sum_m=float(w @ m), sum_d=float(w @ d), sum_m2=float(w @ (m * m)),
            sum_d2=float(w @ (d * d)), sum_md=float(w @ (m * d)))
        # bucket i holds CTR in [i/B, (i+1)/B); CTR = 1 goes into the last bucket
        buckets = np.minimum(m * HISTOGRAM_BINS // d, HISTOGRAM_BINS - 1)
        hist[int(variant_id)] = np.bincount(buckets, weights=w, minlength=HISTOGRAM_BINS).astype(int).tolist()
    return stats, hist


def _daily_moments(experiment_id: int) -> list[tuple]:
    return list(VariantDailyMoments.objects.filter(experiment_id=experiment_id).order_by("day").values_list(
        "variant_id", "day", "users", "sum_clicks", "sum_impressions", "sum_clicks_sq", "sum_impressions_sq",
        "sum_impressions_clicks"))


def _position_rows(experiment_id: int) -> list[tuple]:
    return list(PositionRollup.objects.filter(experiment_id=experiment_id).order_by("position").values_list(
        "variant_id", "position", "impressions", "clicks"))


# --- composition ------------------------------------------------------------------------------

def _daily_statistics(rows: list[tuple], variant_ids: list[int], until: date | None = None
                      ) -> tuple[list[date], dict[int, RatioStatistic]]:
    """Per variant, cumulative moments on every day from the first row to ``until`` (default: the last
    row), forward-filled: a day without events for a variant has no row, and its cumulative values are
    the previous day's. A running experiment's series runs to today, so quiet days show as no new users."""
    if not rows:
        return [], {}
    first, last = rows[0][1], max(rows[-1][1], until or rows[-1][1])
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    values = {vid: np.full((len(days), 6), np.nan) for vid in variant_ids}
    for variant_id, day, *moments in rows:
        if variant_id in values:
            values[variant_id][index[day]] = moments
    out = {}
    for vid, array in values.items():
        for i in range(len(days)):
            if np.isnan(array[i, 0]):
                array[i] = array[i - 1] if i > 0 else 0.0
        out[vid] = RatioStatistic(*(array[:, k] for k in range(6)))
    return days, out


def _new_users_per_day(days: list[date], daily: dict[int, RatioStatistic]) -> float:
    if not days:
        return 0.0
    total = sum(np.asarray(s.n) for s in daily.values())
    window = min(RATE_WINDOW_DAYS, len(total) - 1)
    if window <= 0:
        return float(total[-1])
    return float((total[-1] - total[-1 - window]) / window)


def _ctr_interval(stat: RatioStatistic, alpha: float):
    half = norm.ppf(1 - alpha / 2) * np.sqrt(stat.variance)
    return stat.ratio, stat.ratio - half, stat.ratio + half


def _variant_rows(variants: list[Variant], stats: dict[int, RatioStatistic], comparisons: dict[str, Comparison],
                  alpha: float) -> list[VariantRow]:
    rows = []
    for v in variants:
        s = stats[v.pk]
        ctr, low, high = _ctr_interval(s, alpha)
        base = dict(key=v.key, name=v.name or v.key, is_control=v.is_control, weight=float(v.weight),
                    users=int(s.n), impressions=int(s.sum_d), clicks=int(s.sum_m),
                    ctr=_num(ctr), ctr_ci_lower=_num(low), ctr_ci_upper=_num(high))
        c = comparisons.get(v.key)
        if c is not None:
            base.update(lift=_num(c.relative.effect), lift_ci_lower=_num(c.relative.ci_lower),
                        lift_ci_upper=_num(c.relative.ci_upper), absolute_difference=_num(c.absolute.effect),
                        absolute_ci_lower=_num(c.absolute.ci_lower), absolute_ci_upper=_num(c.absolute.ci_upper),
                        p_value=_num(c.p_value_adjusted), always_valid_p_value=_num(c.always_valid_p_adjusted),
                        always_valid_ci_lower=_num(c.sequential.ci_lower),
                        always_valid_ci_upper=_num(c.sequential.ci_upper), naive_p_value=_num(c.naive.p_value),
                        chance_to_win=_num(c.chance_to_win), error=c.relative.error_message)
        rows.append(VariantRow(**base))
    return rows


def _series(days, daily, variants, control, config) -> tuple[dict, dict, dict[str, float]]:
    day_labels = [d.isoformat() for d in days]
    series, lift_series, av_so_far = {}, {}, {}
    for v in variants:
        stat = daily.get(v.pk)
        if stat is None:
            continue
        ctr, low, high = _ctr_interval(stat, config.alpha)
        series[v.key] = {"day": day_labels, "users": np.asarray(stat.n).astype(int).tolist(),
                         "ctr": np.asarray(ctr).tolist(), "ctr_lower": np.asarray(low).tolist(),
                         "ctr_upper": np.asarray(high).tolist()}
        if not v.is_control and control.pk in daily:
            with np.errstate(all="ignore"):
                s = cumulative_series(daily[control.pk], stat, config)
            lift_series[v.key] = {"day": day_labels, **{k: np.asarray(a).tolist() for k, a in s.items()}}
            av_so_far[v.key] = SequentialState(float(s["always_valid_p"][-1]), float(s["cs_lower"][-1]),
                                               float(s["cs_upper"][-1]))
    return series, lift_series, av_so_far


def _positions(rows, variants) -> dict[str, dict[str, list]]:
    key_of = {v.pk: v.key for v in variants}
    out: dict[str, dict[str, list]] = {v.key: {"position": [], "impressions": [], "clicks": [], "ctr": []}
                                       for v in variants}
    for variant_id, position, impressions, clicks in rows:
        if variant_id not in key_of:
            continue
        entry = out[key_of[variant_id]]
        entry["position"].append(int(position))
        entry["impressions"].append(int(impressions))
        entry["clicks"].append(int(clicks))
        entry["ctr"].append(clicks / impressions if impressions else None)
    return out


def experiment_results(experiment: Experiment | int, config: AnalysisConfig = DEFAULT_CONFIG) -> ExperimentResults:
    """The full analysis of one experiment: variant table, SRM, power, verdict and every chart's data."""
    started = time.perf_counter()
    if not isinstance(experiment, Experiment):
        experiment = Experiment.objects.get(pk=experiment)
    variants = list(Variant.objects.filter(experiment=experiment).order_by("-is_control", "id"))
    if not variants or not any(v.is_control for v in variants):
        raise ValueError(f"experiment {experiment.pk} has no control variant")
    control = variants[0]
    empty = RatioStatistic(0, 0, 0, 0, 0, 0)

    sums, hist = _user_aggregate_sums(experiment.pk)
    stats = {v.pk: sums.get(v.pk, empty) for v in variants}
    today = timezone.now().date() if experiment.status == Experiment.Status.RUNNING else None
    days, daily = _daily_statistics(_daily_moments(experiment.pk), [v.pk for v in variants], until=today)
    series, lift_series, av_so_far = _series(days, daily, variants, control, config)

    arms = [Arm(v.key, v.name or v.key, float(v.weight), v.is_control, stats[v.pk]) for v in variants]
    new_per_day = _new_users_per_day(days, daily)
    with np.errstate(all="ignore"):
        comparisons = compare_arms(arms, config, new_users_per_day=new_per_day, sequential_so_far=av_so_far)
    srm = srm_of(arms)
    verdict = experiment_verdict(arms, comparisons, srm, config)

    now = timezone.now()
    since = experiment.started_at
    end = experiment.stopped_at or now
    results = ExperimentResults(
        experiment_id=experiment.pk, name=experiment.name, hypothesis=experiment.hypothesis,
        status=experiment.status, started_at=experiment.started_at.isoformat() if experiment.started_at else None,
        age_days=(end - since).total_seconds() / 86400 if since else None,
        variants=_variant_rows(variants, stats, {c.key: c for c in comparisons}, config.alpha),
        comparisons=[ComparisonOut(c.key, _estimate(c.relative, c.p_value_adjusted), _estimate(c.absolute),
                                   _estimate(c.sequential, c.always_valid_p_adjusted), _estimate(c.naive),
                                   _num(c.chance_to_win)) for c in comparisons],
        srm=Srm(srm.p_value, srm.flagged, srm.message, list(srm.observed), list(srm.expected)),
        power=[PowerRow(c.key, _num(c.power.mde), _num(c.power.mde_sequential), _num(c.power.power_at_target),
                        c.power.target_effect, c.power.days_to_decision, c.power.new_users_per_day)
               for c in comparisons],
        verdict=verdict, series=series, lift_series=lift_series,
        positions=_positions(_position_rows(experiment.pk), variants),
        histogram={"edges": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(4).tolist(),
                   "counts": {v.key: hist.get(v.pk, [0] * HISTOGRAM_BINS) for v in variants}},
        config={"alpha": config.alpha, "n_star": config.n_star, "power": config.power,
                "target_effect": config.target_effect},
        computed_at=now.isoformat(),
    )
    return replace(results, analysis_seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class ExperimentSummary:
    experiment_id: int
    name: str
    status: str
    age_days: float | None
    users: int
    verdict: str


def experiment_summaries(config: AnalysisConfig = DEFAULT_CONFIG) -> list[ExperimentSummary]:
    """The experiments list: status, age, users and verdict (the verdict runs the full analysis)."""
    out = []
    for experiment in Experiment.objects.order_by("-created_at"):
        try:
            results = experiment_results(experiment, config)
            users, verdict, age = sum(v.users for v in results.variants), results.verdict, results.age_days
        except ValueError as error:
            users, verdict, age = 0, str(error), None
        out.append(ExperimentSummary(experiment.pk, experiment.name, experiment.status, age, users, verdict))
    return out


VARIANT_CSV_COLUMNS = [f for f in VariantRow.__dataclass_fields__]


def variant_table_rows(results: ExperimentResults) -> list[list]:
    """The variant table as CSV rows (header first)."""
    rows: list[list] = [VARIANT_CSV_COLUMNS]
    for v in results.variants:
        rows.append(["" if getattr(v, c) is None else getattr(v, c) for c in VARIANT_CSV_COLUMNS])
    return rows
