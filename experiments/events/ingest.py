"""The worker's side of the event pipeline: land a batch of outbox rows, exactly once.

A batch arrives as PostgreSQL COPY text (made by the relay with ``COPY ... TO STDOUT``),
and in ONE transaction it is

1. copied into a session temp table,
2. inserted into ``Page`` (one row per recommendation page, ``ON CONFLICT (request_id) DO
   NOTHING``) and ``Click`` (``ON CONFLICT (event_id) DO NOTHING``); the rows that were really
   new are kept (``RETURNING``), a page with its number of items k,
3. folded into the aggregates from the new rows only (a page adds k impressions to its user
   and one to each of its positions), so a batch sent twice (a broker redelivery, a relay
   resend) never counts twice,
4. confirmed by deleting its rows from the outbox.

A worker killed before the commit leaves nothing behind, and the relay re-sends the
rows that are still in the outbox.

Aggregate writes of concurrent batches are serialised by a transaction-level advisory
lock: they touch the same per-variant rows, and VariantDailyMoments needs each user's
old and new cumulative values in order.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, connection, transaction

from experiments.events.outbox import CLICK, COLUMNS_SQL, OUTBOX, RECOMMENDATION, copy_records, outbox_copy_text
from experiments.events.quarantine import quarantine_rows
from experiments.models import (
    Assignment,
    Click,
    DailyUserRollup,
    InterleavingPositionRollup,
    InterleavingUserDay,
    Page,
    PositionRollup,
    UserAggregate,
    VariantDailyMoments,
)

logger = logging.getLogger(__name__)
AGGREGATES_LOCK = 0x0C0551_11  # pg_advisory_xact_lock key of the aggregate stage

_T = {
    "page": Page._meta.db_table, "click": Click._meta.db_table,
    "assignment": Assignment._meta.db_table, "user": UserAggregate._meta.db_table,
    "daily": DailyUserRollup._meta.db_table, "position": PositionRollup._meta.db_table,
    "moments": VariantDailyMoments._meta.db_table,
    "il_user": InterleavingUserDay._meta.db_table, "il_position": InterleavingPositionRollup._meta.db_table,
}

_SETUP = (
    f"CREATE TEMP TABLE IF NOT EXISTS ingest_staging (LIKE {OUTBOX}) ON COMMIT DELETE ROWS",
    # new pages (kind 3, n = items, position NULL) and new clicks (kind 2, n = 1, their position); teams / team:
    # interleaved pages and clicks on them (NULL otherwise)
    "CREATE TEMP TABLE IF NOT EXISTS ingest_fresh (kind smallint, experiment_id bigint, variant_id bigint, "
    "user_key bigint, n int, position int, day date, at timestamptz, teams smallint[], team smallint) "
    "ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS ingest_user_days (experiment_id bigint, variant_id bigint, user_key bigint, "
    "day date, imp bigint, clk bigint) ON COMMIT DELETE ROWS",
)

_STEPS = (
    # 2. raw events; keep only those that were new
    f"""WITH pg AS (
        INSERT INTO {_T['page']} (request_id, experiment_id, variant_id, user_key, placement, created_at,
                                  track_ids, scores, teams)
        SELECT request_id, experiment_id, variant_id, user_key, 'track_page', created_at, track_ids, scores, teams
        FROM ingest_staging WHERE kind = {RECOMMENDATION}
        ON CONFLICT (request_id) DO NOTHING
        RETURNING experiment_id, variant_id, user_key, cardinality(track_ids) AS k, created_at, teams),
    clk AS (
        INSERT INTO {_T['click']} (event_id, request_id, experiment_id, variant_id, user_key, track_id, position,
                                   client_time, created_at, team)
        SELECT event_id, request_id, experiment_id, variant_id, user_key, track_id, position, client_time, created_at,
               team
        FROM ingest_staging WHERE kind = {CLICK}
        ON CONFLICT (event_id) DO NOTHING
        RETURNING experiment_id, variant_id, user_key, position, created_at, team)
    INSERT INTO ingest_fresh
    SELECT {RECOMMENDATION}, experiment_id, variant_id, user_key, k, NULL, (created_at AT TIME ZONE 'UTC')::date,
           created_at, teams, NULL FROM pg
    UNION ALL
    SELECT {CLICK}, experiment_id, variant_id, user_key, 1, position, (created_at AT TIME ZONE 'UTC')::date,
           created_at, NULL, team FROM clk""",
    f"SELECT pg_advisory_xact_lock({AGGREGATES_LOCK})",
    # 3a. first exposure (idempotent by the unique key, so duplicates may take part)
    f"""INSERT INTO {_T['assignment']} (experiment_id, variant_id, user_key, user_id, first_exposure_at)
    SELECT DISTINCT ON (experiment_id, user_key) experiment_id, variant_id, user_key, user_id, created_at
    FROM ingest_staging WHERE kind = {RECOMMENDATION} ORDER BY experiment_id, user_key, created_at
    ON CONFLICT (experiment_id, user_key) DO NOTHING""",
    # 3b. per position: a page adds one impression to each of its positions 1..k (temp-table work only)
    f"""INSERT INTO {_T['position']} (experiment_id, variant_id, position, impressions, clicks)
    SELECT experiment_id, variant_id, position, sum(imp), sum(clk) FROM (
        SELECT f.experiment_id, f.variant_id, g.p AS position, count(*) AS imp, 0 AS clk
        FROM ingest_fresh f, generate_series(1, f.n) AS g(p) WHERE f.kind = {RECOMMENDATION} GROUP BY 1, 2, 3
        UNION ALL
        SELECT experiment_id, variant_id, position, 0, count(*) FROM ingest_fresh WHERE kind = {CLICK}
        GROUP BY 1, 2, 3) x
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, variant_id, position) DO UPDATE
    SET impressions = {_T['position']}.impressions + EXCLUDED.impressions,
        clicks = {_T['position']}.clicks + EXCLUDED.clicks""",
    # 3c'. interleaving: per user and day, pages, first picks of team A and each team's credits ...
    f"""INSERT INTO {_T['il_user']} (experiment_id, user_key, day, pages, a_first, credits_a, credits_b)
    SELECT experiment_id, user_key, day, count(*) FILTER (WHERE kind = {RECOMMENDATION}),
           count(*) FILTER (WHERE kind = {RECOMMENDATION} AND teams[1] = 1),
           count(*) FILTER (WHERE kind = {CLICK} AND team = 1), count(*) FILTER (WHERE kind = {CLICK} AND team = 2)
    FROM ingest_fresh WHERE teams IS NOT NULL OR team IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, user_key, day) DO UPDATE
    SET pages = {_T['il_user']}.pages + EXCLUDED.pages, a_first = {_T['il_user']}.a_first + EXCLUDED.a_first,
        credits_a = {_T['il_user']}.credits_a + EXCLUDED.credits_a,
        credits_b = {_T['il_user']}.credits_b + EXCLUDED.credits_b""",
    # ... and per position: pages, slots held by team B, and each team's credits
    f"""INSERT INTO {_T['il_position']} (experiment_id, position, pages, slots_b, clicks_a, clicks_b)
    SELECT experiment_id, position, sum(pages), sum(slots_b), sum(clicks_a), sum(clicks_b) FROM (
        SELECT f.experiment_id, g.p::int AS position, count(*) AS pages, count(*) FILTER (WHERE g.team = 2) AS slots_b,
               0 AS clicks_a, 0 AS clicks_b
        FROM ingest_fresh f, unnest(f.teams) WITH ORDINALITY AS g(team, p)
        WHERE f.kind = {RECOMMENDATION} AND f.teams IS NOT NULL GROUP BY 1, 2
        UNION ALL
        SELECT experiment_id, position, 0, 0, count(*) FILTER (WHERE team = 1), count(*) FILTER (WHERE team = 2)
        FROM ingest_fresh WHERE kind = {CLICK} AND team IS NOT NULL GROUP BY 1, 2) x
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (experiment_id, position) DO UPDATE
    SET pages = {_T['il_position']}.pages + EXCLUDED.pages, slots_b = {_T['il_position']}.slots_b + EXCLUDED.slots_b,
        clicks_a = {_T['il_position']}.clicks_a + EXCLUDED.clicks_a,
        clicks_b = {_T['il_position']}.clicks_b + EXCLUDED.clicks_b""",
    # 3c. per user and day
    f"""INSERT INTO ingest_user_days
    SELECT experiment_id, min(variant_id), user_key, day, coalesce(sum(n) FILTER (WHERE kind = {RECOMMENDATION}), 0),
           count(*) FILTER (WHERE kind = {CLICK})
    FROM ingest_fresh GROUP BY experiment_id, user_key, day""",
    f"""INSERT INTO {_T['daily']} (experiment_id, variant_id, user_key, day, impressions, clicks)
    SELECT experiment_id, variant_id, user_key, day, imp, clk FROM ingest_user_days ORDER BY 1, 3, 4
    ON CONFLICT (experiment_id, user_key, day) DO UPDATE
    SET impressions = {_T['daily']}.impressions + EXCLUDED.impressions,
        clicks = {_T['daily']}.clicks + EXCLUDED.clicks""",
    # 3d. per user over the experiment, and the moments of the cumulative per-user values.
    # old = new - delta of this batch (RETURNING gives the value after our own update, under the row lock);
    # a user with events on several days in one batch is walked day by day, so the moments telescope.
    f"""WITH batch AS (
        SELECT experiment_id, min(variant_id) AS variant_id, user_key, sum(imp) AS imp, sum(clk) AS clk
        FROM ingest_user_days GROUP BY experiment_id, user_key),
    seen AS (
        SELECT experiment_id, user_key, min(at) AS first_at, max(at) AS last_at
        FROM ingest_fresh GROUP BY experiment_id, user_key),
    upserted AS (
        INSERT INTO {_T['user']} (experiment_id, variant_id, user_key, impressions, clicks, first_seen, last_seen)
        SELECT b.experiment_id, b.variant_id, b.user_key, b.imp, b.clk, s.first_at, s.last_at
        FROM batch b JOIN seen s USING (experiment_id, user_key) ORDER BY b.experiment_id, b.user_key
        ON CONFLICT (experiment_id, user_key) DO UPDATE
        SET impressions = {_T['user']}.impressions + EXCLUDED.impressions,
            clicks = {_T['user']}.clicks + EXCLUDED.clicks,
            first_seen = LEAST({_T['user']}.first_seen, EXCLUDED.first_seen),
            last_seen = GREATEST({_T['user']}.last_seen, EXCLUDED.last_seen)
        RETURNING experiment_id, user_key, impressions, clicks),
    walked AS (
        SELECT d.experiment_id, d.variant_id, d.user_key, d.day, d.imp, d.clk,
               u.impressions - b.imp + sum(d.imp) OVER w - d.imp AS old_imp,
               u.clicks - b.clk + sum(d.clk) OVER w - d.clk AS old_clk,
               row_number() OVER w = 1 AND u.impressions = b.imp AND u.clicks = b.clk AS is_new
        FROM ingest_user_days d
        JOIN batch b USING (experiment_id, user_key)
        JOIN upserted u USING (experiment_id, user_key)
        WINDOW w AS (PARTITION BY d.experiment_id, d.user_key ORDER BY d.day))
    INSERT INTO ingest_moments_delta
    SELECT experiment_id, variant_id, day,
           count(*) FILTER (WHERE is_new),
           sum(imp), sum(clk),
           sum((old_imp + imp) * (old_imp + imp) - old_imp * old_imp),
           sum((old_clk + clk) * (old_clk + clk) - old_clk * old_clk),
           sum((old_imp + imp) * (old_clk + clk) - old_imp * old_clk)
    FROM walked GROUP BY experiment_id, variant_id, day""",
    # a day's first row starts from the previous day's cumulative moments
    f"""INSERT INTO {_T['moments']} (experiment_id, variant_id, day, users, sum_impressions, sum_clicks,
                                     sum_impressions_sq, sum_clicks_sq, sum_impressions_clicks)
    SELECT d.experiment_id, d.variant_id, d.day, coalesce(p.users, 0), coalesce(p.sum_impressions, 0),
           coalesce(p.sum_clicks, 0), coalesce(p.sum_impressions_sq, 0), coalesce(p.sum_clicks_sq, 0),
           coalesce(p.sum_impressions_clicks, 0)
    FROM ingest_moments_delta d
    LEFT JOIN LATERAL (SELECT * FROM {_T['moments']} m WHERE m.experiment_id = d.experiment_id
                       AND m.variant_id = d.variant_id AND m.day < d.day ORDER BY m.day DESC LIMIT 1) p ON true
    ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, variant_id, day) DO NOTHING""",
    # a day's change is also a change of every later day's cumulative values
    f"""UPDATE {_T['moments']} m SET users = m.users + a.users, sum_impressions = m.sum_impressions + a.si,
        sum_clicks = m.sum_clicks + a.sc, sum_impressions_sq = m.sum_impressions_sq + a.sii,
        sum_clicks_sq = m.sum_clicks_sq + a.scc, sum_impressions_clicks = m.sum_impressions_clicks + a.sic
    FROM (SELECT m2.id, sum(d.users) AS users, sum(d.si) AS si, sum(d.sc) AS sc, sum(d.sii) AS sii,
                 sum(d.scc) AS scc, sum(d.sic) AS sic
          FROM {_T['moments']} m2 JOIN ingest_moments_delta d
            ON d.experiment_id = m2.experiment_id AND d.variant_id = m2.variant_id AND m2.day >= d.day
          GROUP BY m2.id) a
    WHERE m.id = a.id""",
)

_SETUP += (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_moments_delta (experiment_id bigint, variant_id bigint, day date, "
    "users bigint, si bigint, sc bigint, sii bigint, scc bigint, sic bigint) ON COMMIT DELETE ROWS",
)

# An id array keeps this an index probe per row (the temp table has no statistics to plan a join with).
_CONFIRM = f"DELETE FROM {OUTBOX} WHERE id = ANY(ARRAY(SELECT id FROM ingest_staging))"


_prepared_sessions: weakref.WeakSet = weakref.WeakSet()  # connections that have the temp tables


@dataclass(frozen=True)
class IngestResult:
    received: int  # items shown (k per page) + clicks in the batch
    impressions: int  # newly landed items (k per new page)
    clicks: int  # newly landed clicks
    seconds: float
    quarantined: int = 0  # outbox rows moved aside because they could not be landed
    pages: int = 0  # newly landed pages


def ingest_copy_batch(copy_text: str) -> IngestResult:
    """Land one batch of outbox rows (COPY text format, columns ``COPY_COLUMNS``)."""
    started = time.perf_counter()
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        created = connection.connection not in _prepared_sessions
        if created:  # IF NOT EXISTS: also right after a failed batch rolled the creation back
            for statement in _SETUP:
                cursor.execute(statement)
        # Safe to skip the WAL flush wait: a batch lost in a crash is lost whole, with its outbox deletion,
        # so the relay sends it again.
        cursor.execute("SET LOCAL synchronous_commit = off")
        if nested:  # emptied by every commit (ON COMMIT DELETE ROWS), but not inside an outer transaction
            cursor.execute("DELETE FROM ingest_staging; DELETE FROM ingest_fresh; DELETE FROM ingest_user_days; "
                           "DELETE FROM ingest_moments_delta")
        with cursor.cursor.copy(f"COPY ingest_staging ({COLUMNS_SQL}) FROM STDIN") as copy:
            copy.write(copy_text)
        cursor.execute(f"SELECT id, kind FROM ingest_staging WHERE kind NOT IN ({RECOMMENDATION}, {CLICK}) LIMIT 1")
        unknown = cursor.fetchone()
        if unknown is not None:  # never confirmed unlanded: the batch fails, and the row is quarantined alone
            raise ValueError(f"outbox row {unknown[0]} has kind {unknown[1]}: the worker lands pages (3) and "
                             "clicks (2)")
        cursor.execute(f"SELECT coalesce(sum(cardinality(track_ids)) FILTER (WHERE kind = {RECOMMENDATION}), 0), "
                       f"count(*) FILTER (WHERE kind = {RECOMMENDATION}), count(*) FILTER (WHERE kind = {CLICK}) "
                       "FROM ingest_staging")
        items, pages, clicks_received = cursor.fetchone()
        received = items + clicks_received
        for statement in _STEPS:
            cursor.execute(statement)
        cursor.execute(f"SELECT coalesce(sum(n) FILTER (WHERE kind = {RECOMMENDATION}), 0), "
                       f"count(*) FILTER (WHERE kind = {RECOMMENDATION}), count(*) FILTER (WHERE kind = {CLICK}) "
                       "FROM ingest_fresh")
        impressions, new_pages, clicks = cursor.fetchone()
        cursor.execute(_CONFIRM)
    if created and not nested:  # committed: the temp tables now live as long as the session
        _prepared_sessions.add(connection.connection)
    return IngestResult(received=received, impressions=impressions, clicks=clicks,
                        seconds=time.perf_counter() - started, pages=new_pages)


# The database is away or busy: the batch is fine, retry it whole later (the task's autoretry, the relay's resend).
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def ingest_or_quarantine(copy_text: str) -> IngestResult:
    """``ingest_copy_batch``, except that rows that make it fail are quarantined and the rest landed.

    A batch that fails for a non-transient reason is split in halves, recursively, so one bad
    row costs about 2 log2(batch) extra attempts and never blocks the other rows. Transient
    errors propagate: the whole batch is retried later.
    """
    try:
        return ingest_copy_batch(copy_text)
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:  # noqa: BLE001 - any other failure is a property of some row of this batch
        records = copy_records(copy_text)
        if len(records) <= 1:
            return _quarantine_records(records, error)
        middle = len(records) // 2
        started = time.perf_counter()
        parts = [ingest_or_quarantine("".join(r + "\n" for r in half)) for half in (records[:middle],
                                                                                     records[middle:])]
        return IngestResult(received=sum(p.received for p in parts), impressions=sum(p.impressions for p in parts),
                            clicks=sum(p.clicks for p in parts), seconds=time.perf_counter() - started,
                            quarantined=sum(p.quarantined for p in parts), pages=sum(p.pages for p in parts))


def _quarantine_records(records: list[str], error: Exception) -> IngestResult:
    ids = []
    for record in records:
        head = record.split("\t", 1)[0]
        if head.isdigit():
            ids.append(int(head))
        else:  # not an outbox record at all: nothing to move; the outbox row (if any) is re-sent
            logger.error("ingest: dropped a record that is not an outbox row: %.200r", record)
    reason = f"{type(error).__name__}: {error}".strip()
    moved = quarantine_rows(ids, reason) if ids else 0
    if moved:
        logger.error("ingest: quarantined outbox row(s) %s: %s", ids, reason)
    return IngestResult(received=0, impressions=0, clicks=0, seconds=0.0, quarantined=moved)


def drain_outbox(batch_size: int = 5000) -> int:
    """Land everything in the outbox in this process (the worker's code path, without the broker).

    For tests, demos and maintenance; the relay and the worker do this continuously.
    """
    total, after = 0, 0
    while True:
        text, last = outbox_copy_text(batch_size, after)
        if not text:
            return total
        total += ingest_or_quarantine(text).received
        after = last
