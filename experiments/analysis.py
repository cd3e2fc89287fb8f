"""Experiment results: read the aggregate tables the worker keeps and hand their rows to the statistics core.

Never reads raw events (but a young experiment's hourly charts), and holds no statistics: ``report.analyse`` turns the
rows into the whole report. Per experiment it reads

1. VariantMoments (one array per variant, kept by the worker: experiments/variant_moments.py): users, every sum
   and product of the per-user sums any metric needs, and the per-user CTR histogram;
2. VariantDailyMoments (one row per variant and day): the cumulative time series.
3. PositionRollup (one row per variant and position): CTR by position (and, for an experiment younger than three
   days, its pages and clicks by hour: ``hourly_moments``).
4. for the metric plan's winsorisation, a 1 % sample and ONE filtered pass over UserAggregate that returns the
   users at the top (metric_scan.py): the caps and the correction of the stored sums from raw to capped. CUPED,
   the group-sequential test and the ship decision of the experiment's plan (plan.py) need nothing else.

``user_counts`` (the per-user frequency table the CTR report once read: the bench's contrast), ``user_metric_rows``
(every user's sums as arrays) and ``daily_metric_moments`` (every day's cumulative moments of all the ratio metrics)
serve tests and benches.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime

from django.db import connection
from django.utils import timezone

from experiments import variant_moments
from experiments.metric_scan import metric_moments
from experiments.models import (
    Click,
    Experiment,
    InterleavingPositionRollup,
    InterleavingUserDay,
    Page,
    PositionRollup,
    UserAggregate,
    Variant,
    VariantDailyMoments,
)
from experiments.plan import experiment_plan
from experiments.stats.aggregates import (
    METRIC_SUMS,
    AggregateRows,
    ArmSpec,
    ExperimentInfo,
    UserMetricRows,
    user_metric_rows_from_copy,
)
from experiments.stats.comparisons import AnalysisConfig
from experiments.stats.interleaving_report import InterleavingResults, InterleavingRows, analyse_interleaving
from experiments.stats.metrics import metric
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


HOURLY_BELOW_DAYS = 3  # younger experiments also get their charts' series per hour


def hourly_moments(experiment_id: int, since: datetime) -> list[tuple]:
    """Rows as ``daily_moments``'s, one per variant and hour with events, for a young experiment's charts: the
    cumulative per-user moments of impressions and clicks at the end of each hour.

    No aggregate table keeps hours, so this reads the experiment's pages and clicks (bounded: the experiment is
    younger than ``HOURLY_BELOW_DAYS``): per user and hour the increments, and each user's step from their old to
    their new cumulative values, as the worker keeps VariantDailyMoments (a square grows by x (2 o + x), a product
    ab by a o_b + b o_a + a b), summed per hour and accumulated. Pages served but not yet landed by the worker
    are in it; the tests and the verdict read the daily moments. ``since``: the experiment's start (its events
    come after it). Neither table has an index on experiment or time (serving writes them), so this is a
    scan of both: see docs/statistics.md ("Hourly while young")."""
    page, click = Page._meta.db_table, Click._meta.db_table
    sql = f"""
        WITH ev AS (
            SELECT variant_id, user_key, date_trunc('hour', created_at) AS h, cardinality(track_ids)::bigint AS imp,
                   0::bigint AS clk FROM {page}
            WHERE experiment_id = %(id)s AND variant_id IS NOT NULL AND created_at >= %(since)s
            UNION ALL
            SELECT variant_id, user_key, date_trunc('hour', created_at), 0, 1 FROM {click}
            WHERE experiment_id = %(id)s AND variant_id IS NOT NULL AND created_at >= %(since)s),
        uh AS (SELECT variant_id, user_key, h, sum(imp) AS imp, sum(clk) AS clk FROM ev GROUP BY 1, 2, 3),
        steps AS (SELECT variant_id, h, imp, clk, sum(imp) OVER w - imp AS oi, sum(clk) OVER w - clk AS oc,
                         row_number() OVER w = 1 AS is_new
                  FROM uh WINDOW w AS (PARTITION BY variant_id, user_key ORDER BY h)),
        hours AS (SELECT variant_id, h, count(*) FILTER (WHERE is_new) AS users, sum(clk) AS c, sum(imp) AS i,
                         sum(clk * (2 * oc + clk)) AS cc, sum(imp * (2 * oi + imp)) AS ii,
                         sum(imp * oc + clk * oi + imp * clk) AS ic
                  FROM steps GROUP BY 1, 2)
        SELECT variant_id, h, sum(users) OVER v, sum(c) OVER v, sum(i) OVER v, sum(cc) OVER v, sum(ii) OVER v,
               sum(ic) OVER v
        FROM hours WINDOW v AS (PARTITION BY variant_id ORDER BY h) ORDER BY h, variant_id"""
    with connection.cursor() as cursor:
        cursor.execute(sql, {"id": experiment_id, "since": since})
        return [(v, h, int(u), *(float(x) for x in rest)) for v, h, u, *rest in cursor.fetchall()]


def _young(experiment: Experiment, now: datetime) -> bool:
    return (experiment.started_at is not None
            and ((experiment.stopped_at or now) - experiment.started_at).total_seconds() < HOURLY_BELOW_DAYS * 86400)


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


def experiment_results(experiment: Experiment | int,
                       config: AnalysisConfig = DEFAULT_CONFIG) -> ExperimentResults | InterleavingResults:
    """The full analysis of one experiment: variant table, SRM, power, verdict and every chart's data.

    An interleaving experiment gets its own report (``interleaving_results``). A ValueError (the API's
    400) when the experiment has no control variant.
    """
    started = time.perf_counter()
    if not isinstance(experiment, Experiment):
        experiment = Experiment.objects.get(pk=experiment)
    if experiment.kind == Experiment.Kind.INTERLEAVING:
        return interleaving_results(experiment)
    now = timezone.now()
    arms = _arms(list(Variant.objects.filter(experiment=experiment).order_by("-is_control", "id")))
    pk = experiment.pk
    plan = experiment_plan(experiment, arms=len(arms))
    stored = variant_moments.read(pk)
    moments = metric_moments(pk, [metric(k) for k, _, _ in plan.roles()], plan.winsor_percentile, stored=stored)
    hourly = hourly_until = None
    if _young(experiment, now):
        hourly = hourly_moments(pk, experiment.started_at)
        last = now if experiment.status == Experiment.Status.RUNNING else experiment.stopped_at or now
        hourly_until = last.replace(minute=0, second=0, microsecond=0)
    rows = AggregateRows((), daily_moments(pk), position_rows(pk), until=_until(experiment, now),
                         metric_moments=moments or None, hourly=hourly, hourly_until=hourly_until,
                         stored_moments=stored)
    results = analyse(_info(experiment, now), arms, rows, config, plan=plan)
    return replace(results, analysis_seconds=time.perf_counter() - started)


# --- interleaving ----------------------------------------------------------------------------------

_IL_USER = InterleavingUserDay._meta.db_table


def interleaving_user_counts(experiment_id: int) -> tuple[list[tuple], list[tuple]]:
    """ONE pass over the per-user-day credits, two frequency tables of the per-user totals: how many users have
    each (credits A, credits B), with their pages and first picks; and each (long listens of A's items, of B's)."""
    sql = f"""WITH u AS (SELECT user_key, sum(credits_a) AS a, sum(credits_b) AS b, sum(pages) AS p,
                                sum(a_first) AS f, sum(listens_a) AS la, sum(listens_b) AS lb
                         FROM {_IL_USER} WHERE experiment_id = %s GROUP BY user_key)
              SELECT GROUPING(la) = 1, coalesce(a, la), coalesce(b, lb), count(*), sum(p), sum(f) FROM u
              GROUP BY GROUPING SETS ((a, b), (la, lb))"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [experiment_id])
        rows = cursor.fetchall()
    return [row[1:] for row in rows if row[0]], [row[1:4] for row in rows if not row[0]]


def interleaving_daily_counts(experiment_id: int) -> list[tuple]:
    """Per day, the same table over each user's cumulative totals at the end of that day.

    Cost: users x days rows are summed (each user's days up to each day); fine for the experiments an
    interleaving test needs (thousands of users), not a million-user table (docs/interleaving.md)."""
    sql = f"""WITH days AS (SELECT DISTINCT day FROM {_IL_USER} WHERE experiment_id = %(e)s),
              cum AS (SELECT d.day, r.user_key, sum(r.credits_a) AS a, sum(r.credits_b) AS b, sum(r.pages) AS p,
                             sum(r.a_first) AS f
                      FROM days d JOIN {_IL_USER} r ON r.experiment_id = %(e)s AND r.day <= d.day
                      GROUP BY d.day, r.user_key)
              SELECT day, a, b, count(*), sum(p), sum(f) FROM cum GROUP BY day, a, b ORDER BY day"""
    with connection.cursor() as cursor:
        cursor.execute(sql, {"e": experiment_id})
        return cursor.fetchall()


def interleaving_position_rows(experiment_id: int) -> list[tuple]:
    return list(InterleavingPositionRollup.objects.filter(experiment_id=experiment_id).order_by("position")
                .values_list("position", "pages", "slots_b", "clicks_a", "clicks_b"))


def interleaving_results(experiment: Experiment) -> InterleavingResults:
    """The report of an interleaving experiment: team A is the control variant's ranker, team B the other."""
    started = time.perf_counter()
    now = timezone.now()
    arms = _arms(list(Variant.objects.filter(experiment=experiment).order_by("-is_control", "id")))
    if len(arms) != 2:
        raise ValueError(f"interleaving experiment {experiment.pk} has {len(arms)} variants; it needs exactly two")
    pk = experiment.pk
    users, listens = interleaving_user_counts(pk)
    rows = InterleavingRows(users, interleaving_daily_counts(pk), interleaving_position_rows(pk), listens)
    results = analyse_interleaving(_info(experiment, now), arms[0], arms[1], rows)
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
    return [_interleaving_summary(e, now) if e.kind == Experiment.Kind.INTERLEAVING else
            summarise(_info(e, now), _arms(variants[e.pk]), daily[e.pk], until=_until(e, now), config=config)
            for e in experiments]


def _interleaving_summary(experiment: Experiment, now: datetime) -> ExperimentSummary:
    """The list's line of an interleaving experiment: the verdict of its report (three small queries)."""
    info = _info(experiment, now)
    try:
        results = interleaving_results(experiment)
    except ValueError as error:
        return ExperimentSummary(info.experiment_id, info.name, info.status, info.age_days, 0, str(error),
                                 "cannot_compare")
    return ExperimentSummary(info.experiment_id, info.name, info.status, info.age_days, results.users,
                             results.verdict, results.outcome)
