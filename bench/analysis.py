"""Time a full experiment analysis (variant table, tests, verdict and every chart's data).

    .venv/bin/python bench/analysis.py                 # load once (kept), then time 7 runs
    .venv/bin/python bench/analysis.py --reload        # rebuild the data set
    .venv/bin/python bench/analysis.py --users 100000  # a smaller one
    .venv/bin/python bench/analysis.py --core          # the statistics core alone, no database (issue 24)

The data set lives in its own database (``bench_analysis``) so it never touches the
platform's or a test's: one experiment, two arms, 1M users with 10M impressions in
UserAggregate (written straight by SQL ``generate_series``, the shape the worker keeps:
users differ in propensity and in how many impressions they see), 14 days of
VariantDailyMoments and 10 positions of PositionRollup. Raw events are not generated: the
analysis never reads them.

``--core`` times the pure statistics core on synthetic per-user arrays, with no database: 1M users /
~10M impressions, every listening metric (winsorised), CUPED on each, the group-sequential test over 14
daily looks, the always-valid test and the ship decision, i.e. ``report.analyse`` with ``user_columns``
and a planned size, JSON included. It prints every run; the first run also computes the GST boundaries
(cached per design and looks, as in a serving process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
os.environ["DJANGO_DB_NAME"] = os.environ.get("BENCH_DB_NAME", "bench_analysis")

from abplatform import embedded  # noqa: E402

DB_NAME = os.environ["DJANGO_DB_NAME"]
EXPERIMENT_NAME = "bench-analysis"
DAYS = 14


def ensure_database() -> None:
    """The bench's database on the embedded server of the settings' var dir (loading them points embedded there)."""
    from django.conf import settings

    settings.VAR_DIR  # noqa: B018 - loads the settings, which call embedded.use_var_dir
    embedded.ensure_database(DB_NAME)


def load(users: int, mean_impressions: float, lift: float) -> int:
    """Create the experiment and fill its aggregate tables; returns the experiment id."""
    from django.db import connection, transaction

    from experiments.models import (
        Experiment,
        PositionRollup,
        UserAggregate,
        Variant,
        VariantDailyMoments,
        VariantMoments,
    )
    from recommender.models import EmbeddingModel

    Experiment.objects.filter(name=EXPERIMENT_NAME).delete()
    models = [EmbeddingModel.objects.get_or_create(name=f"bench-{kind}", version=1,
                                                   defaults={"kind": kind, "dim": 8})[0]
              for kind in ("baseline", "crossmusim")]
    start = time.perf_counter()
    with transaction.atomic():
        experiment = Experiment.objects.create(name=EXPERIMENT_NAME, status=Experiment.Status.RUNNING,
                                               hypothesis="bench: 1M users, 10M impressions")
        Experiment.objects.filter(pk=experiment.pk).update(started_at=experiment.created_at)
        control = Variant.objects.create(experiment=experiment, key="a", name="A", embedding_model=models[0],
                                         weight=50, is_control=True)
        treatment = Variant.objects.create(experiment=experiment, key="b", name="B", embedding_model=models[1],
                                           weight=50)
        ua, vdm, pr = (m._meta.db_table for m in (UserAggregate, VariantDailyMoments, PositionRollup))
        with connection.cursor() as cursor:
            for table in (ua, vdm, pr, VariantMoments._meta.db_table):  # no FK constraint: clear old loads' rows
                cursor.execute(f"DELETE FROM {table} WHERE experiment_id NOT IN "
                               f"(SELECT id FROM {Experiment._meta.db_table})")
            # Per user: arm by parity, arrival day, impressions 1 + geometric-like (mean ~ mean_impressions),
            # propensity exponential with mean 0.1 (x (1 + lift) in the treatment), clicks rounded at random.
            cursor.execute(f"""
                CREATE TEMP TABLE bench_users AS
                SELECT g AS user_key, CASE WHEN g %% 2 = 0 THEN %s ELSE %s END AS variant_id,
                       floor(random() * {DAYS})::int AS arrival,
                       1 + floor(-ln(1 - random()) * %s)::bigint AS impressions,
                       least(1.0, -ln(1 - random()) * 0.1 * CASE WHEN g %% 2 = 0 THEN 1.0 ELSE %s END) AS p,
                       0.3 + 0.6 * random() AS fit, random() < 0.8 AS has_pre
                FROM generate_series(1, %s) g""", [control.pk, treatment.pk, mean_impressions - 1, 1 + lift, users])
            # Listening: every click is played; a share ``fit`` of the plays are long listens (30-180 s), the
            # others skips (0-29 s). Pre-period (80 % of the users): the same user's habits over 0.5-1.5 times
            # their experiment traffic, so that pre and post are correlated as in the player simulator.
            cursor.execute(f"""
                INSERT INTO {ua} (experiment_id, variant_id, user_key, impressions, clicks, plays, long_listens,
                                  short_plays, listened_seconds, pre_impressions, pre_clicks, pre_plays,
                                  pre_long_listens, pre_short_plays, pre_listened_seconds, first_seen, last_seen)
                SELECT %s, variant_id, user_key, impressions, clicks, clicks, long, clicks - long,
                       long * (30 + random() * 150) + (clicks - long) * random() * 29,
                       pre_i, pre_c, pre_c, pre_l, pre_c - pre_l,
                       pre_l * (30 + random() * 150) + (pre_c - pre_l) * random() * 29, first_seen, now()
                FROM (SELECT *, least(c2.clicks, floor(c2.clicks * fit + random())::bigint) AS long,
                             least(pre_c, floor(pre_c * fit + random())::bigint) AS pre_l
                      FROM (SELECT variant_id, user_key, impressions, fit,
                                   least(impressions, floor(impressions * p + random())::bigint) AS clicks,
                                   pre_i, least(pre_i, floor(pre_i * p * CASE WHEN variant_id = %s THEN 1.0
                                                ELSE 1.0 / %s END + random())::bigint) AS pre_c,
                                   now() - make_interval(days => {DAYS} - arrival) AS first_seen
                            FROM (SELECT *, CASE WHEN has_pre THEN floor(impressions * (0.5 + random()))::bigint
                                                 ELSE 0 END AS pre_i FROM bench_users) b) c2) c3""",
                           [experiment.pk, control.pk, 1 + lift])
            # Cumulative moments per day: a user who arrived on day a has seen a share (k - a + 1)/(DAYS - a)
            # of their impressions and clicks by the end of day k.
            cursor.execute(f"""
                INSERT INTO {vdm} (experiment_id, variant_id, day, users, sum_impressions, sum_clicks,
                                   sum_impressions_sq, sum_clicks_sq, sum_impressions_clicks)
                SELECT %s, variant_id, current_date - ({DAYS - 1} - k), count(*), sum(i), sum(c), sum(i * i),
                       sum(c * c), sum(i * c)
                FROM (SELECT u.variant_id, k,
                             ceil(a.impressions * (k - u.arrival + 1)::float8 / ({DAYS} - u.arrival))::bigint AS i,
                             least(ceil(a.impressions * (k - u.arrival + 1)::float8 / ({DAYS} - u.arrival)),
                                   round(a.clicks * (k - u.arrival + 1)::float8 / ({DAYS} - u.arrival)))::bigint AS c
                      FROM bench_users u JOIN {ua} a ON a.user_key = u.user_key AND a.experiment_id = %s
                      CROSS JOIN generate_series(0, {DAYS - 1}) k WHERE u.arrival <= k) t
                GROUP BY variant_id, k""", [experiment.pk, experiment.pk])
            # Position effect: CTR falls with rank; impressions spread evenly over 10 positions.
            cursor.execute(f"""
                INSERT INTO {pr} (experiment_id, variant_id, position, impressions, clicks)
                SELECT %s, a.variant_id, pos, sum(a.impressions) / 10,
                       round(sum(a.clicks) / 10 * 1.9 * (11 - pos) / 10.45)
                FROM {ua} a CROSS JOIN generate_series(1, 10) pos WHERE a.experiment_id = %s
                GROUP BY a.variant_id, pos""", [experiment.pk, experiment.pk])
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {ua}")
        cursor.execute(f"VACUUM ANALYZE {vdm}")
    print(f"loaded {users:,} users in {time.perf_counter() - start:.1f} s")
    rebuild_moments(experiment.pk)
    return experiment.pk


def rebuild_moments(experiment_id: int) -> None:
    """The worker's per-arm moments (VariantMoments), as the worker would have kept them: one scan."""
    from experiments import variant_moments

    started = time.perf_counter()
    variant_moments.rebuild(experiment_id)
    print(f"VariantMoments rebuilt from UserAggregate (a one-off scan; the worker keeps them from then on) in "
          f"{time.perf_counter() - started:.1f} s")


def backend_cpu_seconds() -> float:
    """CPU time (user + system) the PostgreSQL backend of our connection has used so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_analysis(experiment_id: int, runs: int) -> tuple[float, float]:
    """(Python, PostgreSQL) CPU seconds per full analysis with a serial plan, so that all of the database's
    work happens in our backend: a figure that does not depend on what else the machine is doing."""
    from django.db import connection

    from experiments.analysis import experiment_results

    with connection.cursor() as cursor:
        cursor.execute("SET max_parallel_workers_per_gather = 0")
    try:
        py0, pg0 = time.process_time(), backend_cpu_seconds()
        for _ in range(runs):
            experiment_results(experiment_id).to_dict()
        return (time.process_time() - py0) / runs, (backend_cpu_seconds() - pg0) / runs
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET max_parallel_workers_per_gather")


def print_scan_costs(experiment_id: int, specs, users: int) -> None:
    """Why the full analysis costs what it does: PostgreSQL CPU (serial plan, our backend) of a bare count over the
    users (the floor of any scan), of the winsorisation caps (sample + tail), and of the moments scan, with the
    number of aggregates it evaluates per user."""
    from django.db import connection

    from experiments import metric_scan
    from experiments.stats.metric_moments import moment_query

    query = moment_query(specs)
    columns = [v.source for v in query.capped]
    with connection.cursor() as cursor:
        cursor.execute("SET max_parallel_workers_per_gather = 0")
        try:
            def cpu(run) -> float:
                before = backend_cpu_seconds()
                run(cursor)
                return (backend_cpu_seconds() - before) * 1000

            count = cpu(lambda c: (c.execute(f"SELECT variant_id, count(*) FROM {metric_scan.TABLE} u WHERE "
                                             f"{metric_scan.WHERE} GROUP BY 1", [experiment_id]), c.fetchall()))
            caps_ms = cpu(lambda c: metric_scan.caps_and_tail(experiment_id, columns, 99.9, users))
            caps = {c: w.cap for c, w in metric_scan.caps_and_tail(experiment_id, columns, 99.9, users)[0].items()}
            sums = cpu(lambda c: (c.execute(metric_scan.moments_sql(query, caps), [experiment_id]), c.fetchall()))
        finally:
            cursor.execute("RESET max_parallel_workers_per_gather")
    aggregates = 1 + len(query.variables) + len(query.products)
    print(f"  PostgreSQL CPU, serial: bare count scan {count:.0f} ms; caps and tail users (sample + filtered pass, "
          f"what the stored path reads) {caps_ms:.0f} ms; for contrast, the moments scan {sums:.0f} ms for "
          f"{aggregates} aggregates per user ({len(query.variables)} variables, "
          f"{len(query.products)} products): {(sums - count) / aggregates / users * 1e6:.0f} ns per aggregate "
          f"per user above the bare scan")


def synthetic_core_input(users: int, mean_impressions: float, lift: float, seed: int = 24):
    """Per-user arrays of two arms (post and 14-day pre period, the listening columns) and the aggregate rows
    that today's queries would return for them (frequency table, 14 days of cumulative moments)."""
    from datetime import date, timedelta

    import numpy as np

    from experiments.stats.aggregates import AggregateRows, ArmSpec, ExperimentInfo
    from experiments.stats.metrics import UserColumns

    rng = np.random.default_rng(seed)
    arms = [ArmSpec(1, "a", "A", 50.0, True), ArmSpec(2, "b", "B", 50.0, False)]
    columns, frequencies, daily = {}, [], []
    day0 = date(2026, 11, 21)
    for arm in arms:
        n = users // 2
        activity = rng.lognormal(np.log(mean_impressions - 1) - 0.5, 1.0, n)
        p = rng.beta(0.8, 7.2, n)  # the user's own propensity: the treatment acts after exposure only
        fit = rng.beta(4.0, 2.0, n)

        def period(imps, p=p, fit=fit):
            clicks = rng.binomial(imps, np.minimum(p, 1.0))
            long = rng.binomial(clicks, fit)
            seconds = 30 * long + rng.gamma(np.maximum(long, 1e-9) * 2, 60) * (long > 0) + 12 * (clicks - long)
            return imps, clicks, clicks, long, seconds, clicks - long

        post = period(1 + rng.poisson(activity), p * (1 + (0.0 if arm.is_control else lift)))
        pre = period((1 + rng.poisson(activity)) * (rng.random(n) < 0.8))
        names = ("impressions", "clicks", "plays", "long_listens", "listened_seconds", "short_plays")
        columns[arm.id] = UserColumns(**dict(zip(names, post, strict=True)),
                                      **{f"pre_{k}": v for k, v in zip(names, pre, strict=True)})
        imps, clicks = post[0], post[1]
        pairs, counts = np.unique(np.stack([imps, clicks], axis=1), axis=0, return_counts=True)
        frequencies += [(arm.id, int(i), int(c), int(w)) for (i, c), w in zip(pairs, counts, strict=True)]
        arrival = rng.integers(0, DAYS, n)
        for k in range(DAYS):
            seen = arrival <= k
            i, c = imps[seen].astype(float), clicks[seen].astype(float)
            daily.append((arm.id, day0 + timedelta(days=k), int(seen.sum()), c.sum(), i.sum(), (c * c).sum(),
                          (i * i).sum(), (i * c).sum()))
    daily.sort(key=lambda row: row[1])
    info = ExperimentInfo(1, "bench-core", "", "running", None, None, "2026-12-05T00:00:00+00:00")
    rows = AggregateRows(frequencies, daily, [], user_columns=columns)
    impressions = int(sum(c.impressions.sum() for c in columns.values()))
    return info, arms, rows, impressions


def core_benchmark(users: int, mean_impressions: float, lift: float, runs: int) -> None:
    """Time ``report.analyse`` with every metric, CUPED, the GST and the decision, on in-memory arrays."""
    from experiments.stats.metric_analysis import ExperimentPlan
    from experiments.stats.report import analyse

    info, arms, rows, impressions = synthetic_core_input(users, mean_impressions, lift)
    plan = ExperimentPlan(planned_users=users)
    print(f"core: {users:,} users, {impressions:,} impressions, {len(rows.user_counts):,} frequency rows, "
          f"{len(rows.daily) // 2} days (load average {os.getloadavg()[0]:.1f})")
    timings, cpu = [], []
    for run in range(runs):
        started, cpu0 = time.perf_counter(), time.process_time()
        results = analyse(info, arms, rows, plan=plan)
        results.to_dict()
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu0)
        print(f"  run {run + 1}: {timings[-1] * 1000:.0f} ms wall, {cpu[-1] * 1000:.0f} ms CPU"
              f"{' (GST boundaries computed)' if run == 0 else ''}")
    warm = timings[1:] or timings
    print(f"core analysis: median {statistics.median(warm) * 1000:.0f} ms wall, "
          f"{statistics.median(cpu[1:] or cpu) * 1000:.0f} ms CPU over runs 2-{runs}; first {timings[0] * 1000:.0f} ms "
          f"wall, {cpu[0] * 1000:.0f} ms CPU (load average now {os.getloadavg()[0]:.1f})")
    for c in results.metric_comparisons:
        print(f"  {c.metric:18s} raw {c.raw.effect:+.4f} +- {c.raw.standard_error:.4f}  CUPED {c.cuped.effect:+.4f} "
              f"+- {c.cuped.standard_error:.4f}  variance reduction {c.variance_reduction:.1%}")
    for d in results.decisions:
        print(f"  decision ({d.test}): {d.text}")
    target = 0.5
    print(f"target <= {target} s: {'met' if statistics.median(warm) <= target else 'MISSED'} "
          f"(first run {'met' if timings[0] <= target else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--mean-impressions", type=float, default=10.0)
    parser.add_argument("--lift", type=float, default=0.02, help="true relative CTR lift of arm B")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--core", action="store_true", help="time the statistics core alone (no database)")
    args = parser.parse_args()
    if args.core:
        core_benchmark(args.users, args.mean_impressions, args.lift, args.runs)
        return

    ensure_database()
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.db.models import Count, Sum

    from experiments import variant_moments
    from experiments.analysis import experiment_results, user_counts, user_metric_rows
    from experiments.metric_scan import metric_moments, scanned_metric_moments
    from experiments.models import Experiment, UserAggregate, VariantMoments
    from experiments.stats.metrics import METRICS

    call_command("migrate", verbosity=0)
    experiment = Experiment.objects.filter(name=EXPERIMENT_NAME).first()
    loaded = experiment and UserAggregate.objects.filter(experiment=experiment).count() == args.users
    experiment_id = experiment.pk if loaded and not args.reload else load(args.users, args.mean_impressions,
                                                                           args.lift)
    kept = [len(m) for m in VariantMoments.objects.filter(experiment_id=experiment_id).values_list("moments",
                                                                                                flat=True)]
    if not kept or set(kept) != {variant_moments.LAYOUT.size}:  # loaded before the table (or this layout) existed
        rebuild_moments(experiment_id)
    totals = UserAggregate.objects.filter(experiment_id=experiment_id).aggregate(
        users=Count("id"), impressions=Sum("impressions"), clicks=Sum("clicks"))
    print(f"experiment {experiment_id}: {totals['users']:,} users, {totals['impressions']:,} impressions, "
          f"{totals['clicks']:,} clicks")

    experiment = Experiment.objects.get(pk=experiment_id)
    if experiment.planned_users_per_arm is None:  # every metric, CUPED and the group-sequential test
        Experiment.objects.filter(pk=experiment_id).update(planned_users_per_arm=args.users // 2)
    timings = []
    for run in range(args.runs):
        started = time.perf_counter()
        results = experiment_results(experiment_id)
        results.to_dict()  # the JSON the dashboard and API serve is part of the cost
        timings.append(time.perf_counter() - started)
        print(f"  full analysis run {run + 1}: {timings[-1] * 1000:.0f} ms (load average {os.getloadavg()[0]:.1f})")
    for c in results.metric_comparisons:
        print(f"  {c.metric:18s} raw {c.raw.effect:+.4f} +- {c.raw.standard_error:.4f}  CUPED {c.cuped.effect:+.4f} "
              f"+- {c.cuped.standard_error:.4f}  variance reduction {c.variance_reduction:.1%}")
    for d in results.decisions:
        print(f"  decision ({d.test}): {d.text}")
    ms = [t * 1000 for t in timings]
    print(f"full analysis ({args.runs} runs): min {min(ms):.0f} ms, median {statistics.median(ms):.0f} ms, "
          f"max {max(ms):.0f} ms (first {ms[0]:.0f} ms)")
    specs = list(METRICS.values())
    parts = {"stored moments read (VariantMoments)": lambda: variant_moments.read(experiment_id),
             "4 metrics, stored moments + caps (sample + tail pass)": lambda: metric_moments(
                 experiment_id, specs, 99.9),
             "4 metrics, stored moments, no caps": lambda: metric_moments(experiment_id, specs, None),
             "for contrast: the per-user frequency table scan the CTR report read before": lambda: user_counts(
                 experiment_id),
             "for contrast: 4 metrics by one moments scan of every user, with caps": lambda: scanned_metric_moments(
                 experiment_id, specs, 99.9)}
    for label, run in parts.items():
        spent = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run()
            spent.append(time.perf_counter() - started)
        print(f"  {label}: {', '.join(f'{t * 1000:.0f}' for t in spent)} ms "
              f"(median {statistics.median(spent) * 1000:.0f})")
    stored, scanned = metric_moments(experiment_id, specs, 99.9), scanned_metric_moments(experiment_id, specs, 99.9)
    worst = max(abs(a - b) / max(abs(b), 1e-300) for spec in specs for arm in stored[spec.key].statistics
                for a, b in zip(np.ravel(stored[spec.key].statistics[arm].products),
                                np.ravel(scanned[spec.key].statistics[arm].products), strict=True))
    print(f"  stored path vs the scan: largest relative difference of any sum of products {worst:.1e}")
    print_scan_costs(experiment_id, specs, args.users)
    rows_scan = []
    for _ in range(min(args.runs, 2)):  # the array path, for contrast (slow: every user crosses to Python)
        started = time.perf_counter()
        rows = user_metric_rows(experiment_id)
        rows_scan.append(time.perf_counter() - started)
    users = sum(r.users for r in rows.values())
    print(f"per-user rows of every metric sum and pre-period sum (user_metric_rows, {users:,} users, one binary COPY "
          f"scan): median {statistics.median(rows_scan) * 1000:.0f} ms")
    py_cpu, pg_cpu = cpu_per_analysis(experiment_id, args.runs)
    print(f"CPU per analysis (serial plan): Python {py_cpu * 1000:.0f} ms + PostgreSQL {pg_cpu * 1000:.0f} ms "
          f"(load average now {os.getloadavg()[0]:.1f})")
    print(f"days in series: {len(results.lift_series['b']['day'])}, "
          f"positions: {len(results.positions['b']['position'])}")
    print(f"verdict: {results.verdict}")
    target = 0.5
    print(f"target <= {target} s: {'met' if statistics.median(timings) <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
