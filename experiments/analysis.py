"""Experiment results: read the aggregate tables the worker keeps and hand their rows to the statistics core.

Never reads raw events, and holds no statistics: ``experiments.stats.report.analyse`` turns the
rows into the whole report. Per experiment it runs three small queries:

1. one pass over UserAggregate: per variant, the number of users with each (impressions,
   clicks) pair. The delta-method sufficient statistics and the per-user CTR histogram are
   exact functions of that table.
2. VariantDailyMoments (one row per variant and day): the cumulative time series.
3. PositionRollup (one row per variant and position): CTR by position.

For the listening metrics and CUPED (wired into ``analyse`` by the statistics issue), two more:
``user_metric_rows`` reads every user's sums and pre-period sums in one scan of UserAggregate, and
``daily_metric_moments`` every day's cumulative moments of all the ratio metrics.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime

from django.db import connection
from django.utils import timezone

from experiments.models import Experiment, PositionRollup, UserAggregate, Variant, VariantDailyMoments
from experiments.stats.aggregates import (
    METRIC_SUMS,
    AggregateRows,
    ArmSpec,
    ExperimentInfo,
    UserMetricRows,
    user_metric_rows_from_copy,
)
from experiments.stats.comparisons import AnalysisConfig
from experiments.stats.report import DEFAULT_CONFIG, analyse, summarise
from experiments.stats.results import ExperimentResults, ExperimentSummary

_DAILY_FIELDS = ("variant_id", "day", "users", "sum_clicks", "sum_impressions", "sum_clicks_sq", "sum_impressions_sq",
                 "sum_impressions_clicks")


def user_counts(experiment_id: int) -> list[tuple[int, int, int, int]]:
    """ONE aggregate over UserAggregate: how many users of each variant have each (impressions, clicks).

    That frequency table is the whole distribution of per-user values in a few thousand rows.
    Measured on 1M users it is ~40% faster than asking PostgreSQL for the five sums and a
    ``width_bucket`` histogram directly (one hash key per row instead of seven aggregate transitions).
    """
    sql = f"""SELECT variant_id, impressions, clicks, count(*) FROM {UserAggregate._meta.db_table}
              WHERE experiment_id = %s AND impressions > 0 GROUP BY 1, 2, 3"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [experiment_id])
        return cursor.fetchall()


# One row per user: the arm, then METRIC_SUMS over the experiment, then the same over the pre-period.
_USER_SUMS_SQL = (
    f"SELECT variant_id, {', '.join(METRIC_SUMS)}, {', '.join(f'pre_{name}' for name in METRIC_SUMS)} "
    f"FROM {UserAggregate._meta.db_table} WHERE experiment_id = %s AND impressions > 0"
)


def user_metric_rows(experiment_id: int, arm_ids: list[int] | None = None) -> dict[int, UserMetricRows]:
    """Every user's sums over the experiment and over their pre-period, per arm: ONE scan of UserAggregate.

    The rows travel as PostgreSQL binary COPY and become numpy arrays in the statistics core without a Python
    object per user (``user_metric_rows_from_copy``). ``arm_ids``: the arms to return (default: those with users).
    Cost grows with the users: measured in bench/analysis.py (docs/architecture.md)."""
    sql = _USER_SUMS_SQL.replace("%s", str(int(experiment_id)))
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)") as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    return user_metric_rows_from_copy(data, arm_ids)


# VariantDailyMoments of every ratio metric, in this order after (variant_id, day, users): see its docstring.
DAILY_METRIC_FIELDS = ("variant_id", "day", "users") + tuple(
    f.name for f in VariantDailyMoments._meta.get_fields() if f.name.startswith("sum_"))


def daily_metric_moments(experiment_id: int) -> list[tuple]:
    """Per variant and day, the cumulative moments of every ratio metric's per-user sums (``DAILY_METRIC_FIELDS``),
    ordered by day: the time series of any of the metrics, one row per variant and day."""
    return list(VariantDailyMoments.objects.filter(experiment_id=experiment_id).order_by("day", "variant_id")
                .values_list(*DAILY_METRIC_FIELDS))


def daily_moments(experiment_id: int) -> list[tuple]:
    return list(VariantDailyMoments.objects.filter(experiment_id=experiment_id).order_by("day")
                .values_list(*_DAILY_FIELDS))


def position_rows(experiment_id: int) -> list[tuple]:
    return list(PositionRollup.objects.filter(experiment_id=experiment_id).order_by("position").values_list(
        "variant_id", "position", "impressions", "clicks"))


def _arms(variants: list[Variant]) -> list[ArmSpec]:
    return [ArmSpec(v.pk, v.key, v.name or v.key, float(v.weight), v.is_control) for v in variants]


def _info(experiment: Experiment, now: datetime) -> ExperimentInfo:
    since = experiment.started_at
    age = ((experiment.stopped_at or now) - since).total_seconds() / 86400 if since else None
    return ExperimentInfo(experiment.pk, experiment.name, experiment.hypothesis, experiment.status,
                          since.isoformat() if since else None, age, now.isoformat())


def _until(experiment: Experiment, now: datetime) -> date | None:
    """A running experiment's series runs to today, so quiet days show as no new users."""
    return now.date() if experiment.status == Experiment.Status.RUNNING else None


def experiment_results(experiment: Experiment | int, config: AnalysisConfig = DEFAULT_CONFIG) -> ExperimentResults:
    """The full analysis of one experiment: variant table, SRM, power, verdict and every chart's data.

    A ValueError (the API's 400) when the experiment has no control variant.
    """
    started = time.perf_counter()
    if not isinstance(experiment, Experiment):
        experiment = Experiment.objects.get(pk=experiment)
    now = timezone.now()
    arms = _arms(list(Variant.objects.filter(experiment=experiment).order_by("-is_control", "id")))
    pk = experiment.pk
    rows = AggregateRows(user_counts(pk), daily_moments(pk), position_rows(pk), until=_until(experiment, now))
    results = analyse(_info(experiment, now), arms, rows, config)
    return replace(results, analysis_seconds=time.perf_counter() - started)


def experiment_summaries(config: AnalysisConfig = DEFAULT_CONFIG) -> list[ExperimentSummary]:
    """The experiments list: status, age, users and verdict of every experiment, newest first.

    Cost: three queries for the whole page, whatever the number of experiments or users (experiments,
    their variants, and every VariantDailyMoments row: days x variants per experiment), then
    ``summarise`` per experiment, O(days x variants) arithmetic (a few ms). UserAggregate, the table
    with a row per user, is never read: the last day's cumulative moments hold the same totals.
    """
    now = timezone.now()
    experiments = list(Experiment.objects.order_by("-created_at"))
    variants: dict[int, list[Variant]] = defaultdict(list)
    for v in Variant.objects.filter(experiment__in=experiments).order_by("-is_control", "id"):
        variants[v.experiment_id].append(v)
    daily: dict[int, list[tuple]] = defaultdict(list)
    for experiment_id, *row in (VariantDailyMoments.objects.filter(experiment__in=experiments)
                                .order_by("experiment_id", "day").values_list("experiment_id", *_DAILY_FIELDS)):
        daily[experiment_id].append(tuple(row))
    return [summarise(_info(e, now), _arms(variants[e.pk]), daily[e.pk], until=_until(e, now), config=config)
            for e in experiments]
