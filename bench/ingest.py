"""Event pipeline throughput, end to end: accepted (outbox) -> relay -> Celery -> worker -> PostgreSQL -> aggregates.

    .venv/bin/python bench/ingest.py                       # 500k events, then a run with a SIGKILLed worker
    .venv/bin/python bench/ingest.py --events 200000 --concurrency 2

Each run loads N accepted events as the API leaves them (COPY: the API's own write is measured
by bench/serve_load.py): each served page in ``Page`` with its narrow outbox row, each click and
play (one follows each click) as an outbox row. It starts a real Celery worker (its relay thread
reads the outbox, sends batches through the embedded Redis, its pool lands them), and times until
the outbox is empty. It then counts: every item shown, click and play must be in the aggregates
exactly once, every click in Click and every play in Play once (lost = accepted - landed;
duplicates = landed - accepted). The second run SIGKILLs the worker's whole process group part-way and restarts it.

Runs in its own database (``bench_ingest``), on a queue of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
os.environ["DJANGO_DB_NAME"] = os.environ.get("BENCH_DB_NAME", "bench_ingest")
QUEUE = f"bench-ingest-{uuid.uuid4().hex[:6]}"


sys.path.insert(0, str(ROOT / "bench"))
from benchdb import setup_django_on  # noqa: E402
from loadgen import CpuMeter, group_pids, redis_pids  # noqa: E402

DB_NAME = os.environ["DJANGO_DB_NAME"]


def setup_django() -> None:
    setup_django_on(DB_NAME)


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE experiments_eventoutbox, experiments_page, experiments_click, experiments_assignment, "
            "experiments_useraggregate, experiments_positionrollup, experiments_variantdailymoments, "
            "experiments_play, experiments_userdailytraffic"
        )
        cursor.execute("VACUUM ANALYZE experiments_eventoutbox")


def ensure_experiment() -> tuple[int, list[int]]:
    from experiments.models import Experiment
    from experiments.services import VariantSpec, experiment_create, experiment_start
    from recommender.models import EmbeddingModel

    experiment = Experiment.objects.filter(name="bench-ingest").first()
    if experiment is None:
        models = [EmbeddingModel.objects.get_or_create(name=f"bench-ingest-{kind}", version=1,
                                                       defaults={"kind": kind, "dim": 8})[0]
                  for kind in ("baseline", "crossmusim")]
        experiment = experiment_create(name="bench-ingest", variants=[
            VariantSpec("control", models[0].pk, 50, True), VariantSpec("treatment", models[1].pk, 50)])
        Experiment.objects.filter(pk=experiment.pk).update(status="paused")  # rows only; nothing serves here
        experiment.refresh_from_db()
        del experiment_start
    return experiment.pk, list(experiment.variants.order_by("id").values_list("id", flat=True))


def load_outbox(n_events: int, experiment_id: int, variant_ids: list[int], users: int, click_rate: float,
                play_rate: float = 1.0) -> tuple:
    """COPY ``n_events`` accepted events in the form the API writes them: per request a ``Page`` (10 items) and
    its narrow outbox row, some click rows and, with probability
    ``play_rate``, a play row after a click (seconds exponential, mean 60 s: about 60 % long listens). With
    ``play_rate`` 0 the stream is the one of the benches before plays existed (same draws)."""
    import numpy as np
    from django.db import connection, transaction
    from django.utils import timezone

    from experiments.assignment import user_key
    from experiments.events.ids import new_request_id

    rng = np.random.default_rng(0)
    now = timezone.now().isoformat()
    buffer, pages = io.StringIO(), io.StringIO()
    impressions = clicks = plays = written = 0
    while written < n_events:
        user = int(rng.integers(users))
        uid = f"bench-user-{user}"
        variant = variant_ids[user % len(variant_ids)]
        request = new_request_id()  # time-ordered, as the API makes them
        key = user_key(uid)
        shown = min(10, n_events - written)
        tracks = [int(t) for t in rng.integers(1, 100_000, size=shown)]
        pages.write(f"{request}\t{experiment_id}\t{variant}\t{key}\ttrack_page\t{now}\t"
                    f"{{{','.join(map(str, tracks))}}}\t{{{','.join(['0.5'] * shown)}}}\n")
        buffer.write(f"3\t{request}\t{request}\t{experiment_id}\t{variant}\t{key}\t{uid}\t0\t0\t\\N\t\\N\t{now}\t"
                     f"\\N\t\\N\n")
        written += shown
        impressions += shown
        for position, track in enumerate(tracks, start=1):
            if written < n_events and rng.random() < click_rate:
                buffer.write(f"2\t{uuid.uuid4()}\t{request}\t{experiment_id}\t{variant}\t{key}\t\t{track}\t"
                             f"{position}\t\\N\t{now}\t{now}\t\\N\t\\N\n")
                written += 1
                clicks += 1
                if play_rate > 0 and written < n_events and rng.random() < play_rate:
                    seconds = round(float(rng.exponential(60.0)), 3)
                    skipped = "t" if seconds < 30 else "f"
                    buffer.write(f"4\t{uuid.uuid4()}\t{request}\t{experiment_id}\t{variant}\t{key}\t\t{track}\t"
                                 f"{position}\t\\N\t{now}\t{now}\t{seconds}\t{skipped}\n")
                    written += 1
                    plays += 1
    columns = ("kind, event_id, request_id, experiment_id, variant_id, user_key, user_id, track_id, position, "
               "score, client_time, created_at, listened_seconds, skipped")
    page_columns = "request_id, experiment_id, variant_id, user_key, placement, created_at, track_ids, scores"
    with transaction.atomic(), connection.cursor() as cursor:  # pages and their rows commit together, as served
        with cursor.cursor.copy(f"COPY experiments_page ({page_columns}) FROM STDIN") as copy:
            copy.write(pages.getvalue())
        with cursor.cursor.copy(f"COPY experiments_eventoutbox ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
    return impressions, clicks, plays


def start_worker(concurrency: int, resend_s: float, batch: int) -> subprocess.Popen:
    env = {**os.environ, "CELERY_QUEUE": QUEUE, "EXPERIMENTS_EVENTS_QUEUE": QUEUE,
           "EXPERIMENTS_RELAY_RESEND_S": str(resend_s), "EXPERIMENTS_RELAY_BATCH": str(batch)}
    log = open(ROOT / "var" / "bench-ingest-worker.log", "ab")  # noqa: SIM115
    pool = ["--pool", "solo"] if concurrency == 0 else ["--pool", "prefork", "--concurrency", str(concurrency)]
    level = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "abplatform", "worker", "-Q", QUEUE, *pool, "--loglevel", level,
         "-n", f"{QUEUE}-{uuid.uuid4().hex[:4]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def kill_group(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=30)


def scalar(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0] or 0)


def landed() -> int:
    """Items, clicks and plays the worker has landed: folded into the per-user aggregates (pages are stored at
    serving)."""
    return scalar("SELECT coalesce(sum(impressions + clicks + plays), 0) FROM experiments_useraggregate")


def postgres_backends() -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def relay_leading() -> bool:
    from experiments.events.relay import RELAY_LOCK

    return bool(scalar(f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {RELAY_LOCK} "
                       "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))


def wait_for_relay(timeout: float = 120) -> None:
    deadline = time.perf_counter() + timeout
    while not relay_leading():
        if time.perf_counter() > deadline:
            raise SystemExit("the worker's relay did not start (see var/bench-ingest-worker.log)")
        time.sleep(0.1)


def run(args, kill_at: float | None) -> dict:
    """Worker up and relaying first; then N events become visible in one commit; time until all have landed."""
    reset_tables()
    experiment_id, variant_ids = ensure_experiment()
    worker = start_worker(args.concurrency, args.resend_s, args.batch)
    killed_at = None
    try:
        wait_for_relay()
        started = time.perf_counter()
        impressions, clicks, plays = load_outbox(args.events, experiment_id, variant_ids, args.users,
                                                 args.click_rate, args.play_rate)
        t0 = time.perf_counter()
        total = impressions + clicks + plays
        print(f"  {total:,} accepted events committed to the outbox in {t0 - started:.1f} s "
              f"({total / (t0 - started):,.0f}/s)")
        meter = CpuMeter({"worker": lambda: group_pids(worker.pid), "postgres": postgres_backends,
                          "redis": redis_pids})
        meter.start()
        while scalar("SELECT count(*) FROM (SELECT 1 FROM experiments_eventoutbox LIMIT 1) x"):
            if kill_at is not None and killed_at is None and landed() >= kill_at * total:
                kill_group(worker)
                killed_at = landed()
                print(f"  SIGKILLed the worker with {killed_at:,} events landed; restarting it")
                worker = start_worker(args.concurrency, args.resend_s, args.batch)
            if time.perf_counter() - t0 > args.timeout:
                raise SystemExit("timed out waiting for the outbox to drain")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = meter.stop()
    finally:
        kill_group(worker, signal.SIGTERM)
    got = landed()
    raw = scalar("SELECT (SELECT coalesce(sum(cardinality(track_ids)), 0) FROM experiments_page) "
                 "+ (SELECT count(*) FROM experiments_click) + (SELECT count(*) FROM experiments_play)")
    agg_i = scalar("SELECT sum(impressions) FROM experiments_useraggregate")
    agg_c = scalar("SELECT sum(clicks) FROM experiments_useraggregate")
    agg_p = scalar("SELECT sum(plays) FROM experiments_useraggregate")
    traffic_p = scalar("SELECT sum(plays) FROM experiments_userdailytraffic")
    pos_i = scalar("SELECT sum(impressions) FROM experiments_positionrollup")
    daily_i = scalar("SELECT sum(impressions) FROM experiments_userdailytraffic")
    moments_i = scalar("SELECT sum(sum_impressions) FROM experiments_variantdailymoments")
    result = {
        "events": total, "impressions": impressions, "clicks": clicks, "plays": plays, "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed), "lost": total - got, "duplicates_raw": raw - total,
        "duplicates_in_aggregates": got - total,
        "aggregates_consistent": (agg_i == pos_i == daily_i == moments_i == impressions and agg_c == clicks
                                  and agg_p == traffic_p == plays),
        "killed_with_landed": killed_at,
        "cpu_us_per_event": {name: round(seconds * 1e6 / total, 2) for name, seconds in cpu.items()},
    }
    cpu_total = sum(cpu.values()) / total
    result["ceiling_events_per_s_2_cores"] = round(2 / cpu_total) if cpu_total else None
    print(f"  drained in {elapsed:.2f} s: {result['events_per_s']:,} events/s end to end; lost {result['lost']}, "
          f"duplicates {result['duplicates_raw']} raw / {result['duplicates_in_aggregates']} in aggregates; "
          f"aggregates consistent: {result['aggregates_consistent']}")
    per = result["cpu_us_per_event"]
    print(f"  CPU per event: worker {per['worker']:.1f} us + postgres {per['postgres']:.1f} us + redis "
          f"{per['redis']:.1f} us -> "
          f"{result['ceiling_events_per_s_2_cores']:,} events/s on 2 otherwise idle cores "
          f"(load avg {os.getloadavg()[0]:.1f})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--click-rate", type=float, default=0.05)
    parser.add_argument("--play-rate", type=float, default=1.0, help="share of clicks followed by a play")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes (0: solo pool)")
    parser.add_argument("--batch", type=int, default=10_000,
                        help="outbox rows per Celery task (a recommendation row carries 10 impressions; the "
                             "platform's EXPERIMENTS_RELAY_BATCH default)")
    parser.add_argument("--resend-s", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    setup_django()
    print(f"bench/ingest.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  {os.cpu_count()} cores  "
          f"db={DB_NAME}  worker: {'solo' if args.concurrency == 0 else f'prefork x{args.concurrency}'}, "
          f"{args.batch} outbox rows/task")
    print(f"run 1: {args.events:,} events, undisturbed")
    run(args, kill_at=None)
    if not args.skip_kill:
        print(f"run 2: {args.events:,} events, worker SIGKILLed at 40% and restarted")
        run(args, kill_at=0.4)


if __name__ == "__main__":
    main()
