"""The outbox relay: carries outbox rows to the worker through Celery, in batches, until confirmed.

It runs as a thread inside each Celery worker (started on ``worker_ready``, see
``experiments.tasks``); a session-level PostgreSQL advisory lock makes exactly one of them
the active relay, and the lock passes to another worker when its holder dies.

The relay never marks rows: a row leaves the outbox only when the worker commits it, so
"still in the outbox" means "not confirmed". The relay remembers what it sent
(``InflightBatch``: an id range and a time) and

- sends new rows (id above its cursor) while fewer than ``max_inflight`` batches are
  unconfirmed (back-pressure: a slow worker never gets a flood of resends),
- re-sends a batch whose rows are still there ``resend_after_s`` after it was sent (a
  dead worker, a lost broker message),
- picks up rows that committed late behind its cursor (a request's transaction that
  took its ids before another one committed): first as short-lived "gaps" in the id
  sequence, then by a sweep of old rows that no batch in flight covers.

A restarted relay starts with an empty memory and so re-sends whatever is in the outbox:
the worker's ``ON CONFLICT (event_id) DO NOTHING`` makes every resend harmless.

The loop never dies: any error is logged with its traceback, counted in the heartbeat row
(``RelayHeartbeat``, written every ``heartbeat_every_s`` by the leader, read by ``/healthz``)
and followed by an exponential back-off. A row the worker cannot land is moved aside by the
worker (``events.quarantine``), so no row can block the others.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from experiments.events.outbox import COPY_COLUMNS, OUTBOX, copy_records
from experiments.models import RelayHeartbeat

logger = logging.getLogger(__name__)

RELAY_LOCK = 0x0C0551_12  # pg_try_advisory_lock key: one active relay per database
HEARTBEAT = RelayHeartbeat._meta.db_table


@dataclass
class InflightBatch:
    lo: int
    hi: int
    sent_at: float
    sends: int = 1


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 2000  # outbox rows; a recommendation row is k impressions
    max_inflight: int = 16
    resend_after_s: float = 30.0
    # After a partial batch, wait this long for more rows: fewer, fuller tasks (a task costs the worker a few
    # ms whatever its size) for at most this much extra latency before the events reach the aggregates.
    poll_interval_s: float = 0.2
    gap_wait_s: float = 2.0
    sweep_every_s: float = 1.0
    max_gap_span: int = 50_000
    heartbeat_every_s: float = 2.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class RelayStats:
    sent_batches: int = 0
    sent_rows: int = 0
    resent_batches: int = 0
    swept_rows: int = 0
    send_errors: int = 0
    loop_errors: int = 0  # passes that raised (database or anything else); the loop went on after a back-off
    last_error: str = ""
    extra: dict = field(default_factory=dict)


SendBatch = Callable[[str, int], None]  # (COPY text, row count); raises when the broker refuses


class OutboxRelay:
    def __init__(self, conninfo: str, send: SendBatch, config: RelayConfig | None = None) -> None:
        self.conninfo = conninfo
        self.send = send
        self.config = config or RelayConfig()
        self.stats = RelayStats()
        self.cursor_id = 0
        self.inflight: list[InflightBatch] = []
        self.gaps: dict[int, float] = {}  # id -> when first missed
        self._cursor_history: deque[tuple[float, int]] = deque()
        self._last_sweep = 0.0
        self._watermark = 0  # the cursor as it was gap_wait_s ago
        self._conn: psycopg.Connection | None = None
        self.is_leader = False
        self.backpressured = False  # the last pass sent nothing new because max_inflight batches await confirmation
        self._last_beat = 0.0
        self.host = socket.gethostname()

    # --- connection and leadership ----------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True)
            self.is_leader = False
        return self._conn

    def _ensure_leader(self) -> bool:
        if not self.is_leader:
            row = self._connection().execute("SELECT pg_try_advisory_lock(%s)", [RELAY_LOCK]).fetchone()
            self.is_leader = bool(row and row[0])
            if self.is_leader:  # a new leader knows nothing: everything in the outbox is due
                self.cursor_id, self.inflight, self.gaps, self._watermark = 0, [], {}, 0
                self._cursor_history.clear()
        return self.is_leader

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn, self.is_leader = None, False

    # --- reading the outbox ---------------------------------------------------------------
    def _copy_out(self, where: sql.Composable, params: dict) -> tuple[str, list[int]]:
        """Rows as COPY text plus their ids, in id order, at most one batch."""
        query = sql.SQL("COPY (SELECT {cols} FROM {table} WHERE {where} ORDER BY id LIMIT {limit}) TO STDOUT").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS)), table=sql.Identifier(OUTBOX),
            where=where, limit=sql.Literal(self.config.batch_size),
        )
        conn = self._connection()
        chunks: list[bytes] = []
        with conn.cursor() as cursor, cursor.copy(query.as_string(conn) % _literals(conn, params)) as copy:
            for chunk in copy:
                chunks.append(bytes(chunk))
        text = b"".join(chunks).decode("utf-8")
        ids = [int(record.split("\t", 1)[0]) for record in copy_records(text)]
        return text, ids

    def _send(self, text: str, ids: list[int]) -> bool:
        try:
            self.send(text, len(ids))
        except Exception as error:  # broker down: keep the rows, try again later
            self.stats.send_errors += 1
            logger.warning("outbox relay: broker refused a batch of %d events: %s", len(ids), error)
            return False
        self.stats.sent_batches += 1
        self.stats.sent_rows += len(ids)
        return True

    # --- one pass -------------------------------------------------------------------------
    def _confirm(self) -> None:
        if not self.inflight:
            return
        rows = self._connection().execute(
            f"SELECT r.i FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY AS r(lo, hi, i) "
            f"WHERE EXISTS (SELECT 1 FROM {OUTBOX} o WHERE o.id BETWEEN r.lo AND r.hi)",
            [[b.lo for b in self.inflight], [b.hi for b in self.inflight]],
        ).fetchall()
        pending = {row[0] - 1 for row in rows}
        self.inflight = [b for i, b in enumerate(self.inflight) if i in pending]

    def _resend_stale(self, now: float) -> None:
        for batch in self.inflight:
            if now - batch.sent_at < self.config.resend_after_s:
                continue
            text, ids = self._copy_out(sql.SQL("id BETWEEN %(lo)s AND %(hi)s"), {"lo": batch.lo, "hi": batch.hi})
            if not ids:
                batch.sent_at = now
                continue
            if self._send(text, ids):
                batch.sent_at, batch.sends = now, batch.sends + 1
                self.stats.resent_batches += 1
                logger.warning("outbox relay: re-sent %d unconfirmed events (ids %d..%d, send #%d)",
                               len(ids), ids[0], ids[-1], batch.sends)

    def _sweep(self, now: float) -> None:
        """Rows well behind the cursor that no batch in flight covers: late commits and strays."""
        if now - self._last_sweep < self.config.sweep_every_s:
            return
        self._last_sweep = now
        while self._cursor_history and self._cursor_history[0][0] < now - self.config.gap_wait_s:
            self._watermark = self._cursor_history.popleft()[1]
        watermark = self._watermark
        if watermark <= 0 or len(self.inflight) >= self.config.max_inflight:
            return
        text, ids = self._copy_out(
            sql.SQL("id <= %(wm)s AND NOT EXISTS (SELECT 1 FROM unnest(%(lo)s::bigint[], %(hi)s::bigint[]) "
                    "AS r(lo, hi) WHERE id BETWEEN r.lo AND r.hi)"),
            {"wm": watermark, "lo": [b.lo for b in self.inflight], "hi": [b.hi for b in self.inflight]},
        )
        if ids and self._send(text, ids):
            self.inflight.append(InflightBatch(ids[0], ids[-1], now))
            self.stats.swept_rows += len(ids)

    def _send_new(self, now: float) -> int:
        self.backpressured = len(self.inflight) >= self.config.max_inflight
        if self.backpressured:
            return 0
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < self.config.gap_wait_s}
        text, ids = self._copy_out(
            sql.SQL("id > %(cursor)s OR id = ANY(%(gaps)s::bigint[])"),
            {"cursor": self.cursor_id, "gaps": list(self.gaps)},
        )
        if not ids or not self._send(text, ids):
            return 0
        got = set(ids)
        for gap in got & self.gaps.keys():
            del self.gaps[gap]
        new_ids = [i for i in ids if i > self.cursor_id]
        if new_ids:
            top = new_ids[-1]
            if self.cursor_id > 0 and top - self.cursor_id <= self.config.max_gap_span:
                for missing in set(range(self.cursor_id + 1, top)) - got:
                    self.gaps.setdefault(missing, now)
            self.cursor_id = top
            self._cursor_history.append((now, top))
        self.inflight.append(InflightBatch(ids[0], ids[-1], now))
        return len(ids)

    def heartbeat(self, now: float, force: bool = False) -> None:
        """Upsert the heartbeat row (the leader only, at most every ``heartbeat_every_s``)."""
        if not self.is_leader or (not force and now - self._last_beat < self.config.heartbeat_every_s):
            return
        self._connection().execute(
            f"INSERT INTO {HEARTBEAT} (id, beat_at, host, sent_rows, errors, last_error) "
            f"VALUES (1, now(), %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET beat_at = EXCLUDED.beat_at, "
            f"host = EXCLUDED.host, sent_rows = EXCLUDED.sent_rows, errors = EXCLUDED.errors, "
            f"last_error = EXCLUDED.last_error",
            [self.host, self.stats.sent_rows, self.stats.loop_errors + self.stats.send_errors,
             self.stats.last_error[:2000]],
        )
        self._last_beat = now

    def run_once(self) -> int:
        """One pass; returns the number of new rows sent (0: the caller may sleep)."""
        if not self._ensure_leader():
            return 0
        now = time.monotonic()
        self._confirm()
        self._resend_stale(now)
        self._sweep(now)
        sent = self._send_new(now)
        self.heartbeat(now)
        return sent

    def run_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop``; survives every exception (logged, counted, then a back-off)."""
        backoff = self.config.backoff_min_s
        while not stop.is_set():
            try:
                sent = self.run_once()
            except Exception as error:  # noqa: BLE001 - the relay must outlive any single failure
                self.stats.loop_errors += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                logger.exception("outbox relay: pass failed (error %d), retrying in %.1f s",
                                 self.stats.loop_errors, backoff)
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            backoff = self.config.backoff_min_s
            if not self.is_leader:
                stop.wait(1.0)
            elif self.backpressured:
                stop.wait(0.02)  # the worker is busy: look for confirmations soon, to keep it fed
            elif sent < self.config.batch_size:
                stop.wait(self.config.poll_interval_s)
        self.close()


def _literals(conn: psycopg.Connection, params: dict) -> dict:
    """COPY takes no bind parameters: render them as SQL literals (ints and int lists only)."""
    return {name: sql.Literal(value).as_string(conn) for name, value in params.items()}
