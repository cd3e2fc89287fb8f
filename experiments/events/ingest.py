"""The worker's side of the event pipeline: land a batch of outbox rows, exactly once.

A batch arrives as PostgreSQL COPY text (made by the relay with ``COPY ... TO STDOUT``),
and in ONE transaction it is

1. copied into a session temp table,
2. sorted into what is new: a page (already in ``Page``: serving wrote it) is new while its
   outbox row is there, and deleting that row claims it (``RETURNING``); clicks and plays are
   inserted into ``Click`` and ``Play`` (``ON CONFLICT (event_id) DO NOTHING``) and kept when
   they were new; a page brings its number of items k,
3. folded into the aggregates from the new rows only (a page adds k impressions to its user
   and one to each of its positions, a play one play, a long listen or a short play, and its
   seconds), so a batch sent twice (a broker redelivery, a relay resend) never counts twice:
   every row into ``UserDailyTraffic`` (all traffic per user and day), rows of an experiment
   also into its per-user, per-day, per-position and daily-moment aggregates and its per-arm moments
   (VariantMoments: what the analysis reads instead of scanning the users), and interleaved pages
   with the clicks and plays on them into the interleaving aggregates (each team's credits and long
   listens per user and day, per position),
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

from experiments import variant_moments
from experiments.events.outbox import (
    CLICK,
    COLUMNS_SQL,
    COPY_COLUMNS,
    KINDS,
    OUTBOX,
    PLAY,
    RECOMMENDATION,
    copy_records,
    outbox_copy_text,
)
from experiments.events.quarantine import quarantine_rows
from experiments.models import (
    Assignment,
    Click,
    Experiment,
    InterleavingPositionRollup,
    InterleavingUserDay,
    Page,
    Play,
    PositionRollup,
    UserAggregate,
    UserDailyTraffic,
    VariantDailyMoments,
)

logger = logging.getLogger(__name__)
AGGREGATES_LOCK = 0x0C0551_11  # pg_advisory_xact_lock key of the aggregate stage
LONG_LISTEN_SECONDS = 30  # a play this long is a long listen (a stream); a shorter one a short play (a skip)

_T = {
    "page": Page._meta.db_table, "click": Click._meta.db_table, "play": Play._meta.db_table,
    "assignment": Assignment._meta.db_table, "user": UserAggregate._meta.db_table,
    "position": PositionRollup._meta.db_table,
    "moments": VariantDailyMoments._meta.db_table, "traffic": UserDailyTraffic._meta.db_table,
    "experiment": Experiment._meta.db_table,
    "il_user": InterleavingUserDay._meta.db_table, "il_position": InterleavingPositionRollup._meta.db_table,
}

# The per-user sums every aggregate keeps (ListeningSums), and their short names in the temp tables.
_SUMS = (("impressions", "imp"), ("clicks", "clk"), ("plays", "ply"), ("long_listens", "lng"),
         ("short_plays", "sht"), ("listened_seconds", "sec"))
_SUM_TYPES = {"sec": "double precision"}
# The moments of the cumulative per-user sums (VariantDailyMoments), each as the change one user's step from
# old (o_x) to old + delta (x) makes: a square grows by x (2 o + x), a product ab by a o_b + b o_a + a b.
_MOMENTS = (
    ("users", "count(*) FILTER (WHERE is_new)"),
    ("sum_impressions", "sum(imp)"), ("sum_clicks", "sum(clk)"),
    ("sum_impressions_sq", "sum(imp * (2 * o_imp + imp))"), ("sum_clicks_sq", "sum(clk * (2 * o_clk + clk))"),
    ("sum_impressions_clicks", "sum(imp * o_clk + clk * o_imp + imp * clk)"),
    ("sum_plays", "sum(ply)"), ("sum_long_listens", "sum(lng)"), ("sum_short_plays", "sum(sht)"),
    ("sum_listened_seconds", "sum(sec)"),
    ("sum_plays_sq", "sum(ply * (2 * o_ply + ply))"), ("sum_long_listens_sq", "sum(lng * (2 * o_lng + lng))"),
    ("sum_short_plays_sq", "sum(sht * (2 * o_sht + sht))"),
    ("sum_listened_seconds_sq", "sum(sec * (2 * o_sec + sec))"),
    ("sum_impressions_long_listens", "sum(imp * o_lng + lng * o_imp + imp * lng)"),
    ("sum_clicks_listened_seconds", "sum(clk * o_sec + sec * o_clk + clk * sec)"),
    ("sum_plays_short_plays", "sum(ply * o_sht + sht * o_ply + ply * sht)"),
)
_M = [name for name, _ in _MOMENTS]


def _sums_of_fresh() -> str:
    """The select list of the six sums over ``ingest_fresh`` rows (pages add k impressions, plays their seconds)."""
    return (f"coalesce(sum(n) FILTER (WHERE kind = {RECOMMENDATION}), 0), count(*) FILTER (WHERE kind = {CLICK}), "
            f"count(*) FILTER (WHERE kind = {PLAY}), "
            f"count(*) FILTER (WHERE kind = {PLAY} AND secs >= {LONG_LISTEN_SECONDS}), "
            f"count(*) FILTER (WHERE kind = {PLAY} AND secs < {LONG_LISTEN_SECONDS}), "
            f"coalesce(sum(secs) FILTER (WHERE kind = {PLAY}), 0)")


def _upsert_sums(table: str, key: str) -> str:
    """``ON CONFLICT (key) DO UPDATE`` adding the six sums of the new row to the stored ones."""
    adds = ", ".join(f"{col} = {table}.{col} + EXCLUDED.{col}" for col, _ in _SUMS)
    return f"ON CONFLICT ({key}) DO UPDATE SET {adds}"


_COLS = ", ".join(col for col, _ in _SUMS)
_SHORT = ", ".join(short for _, short in _SUMS)

_SETUP = (
    f"CREATE TEMP TABLE IF NOT EXISTS ingest_staging (LIKE {OUTBOX}) ON COMMIT DELETE ROWS",
    # new pages (kind 3, n = items, position NULL), clicks (kind 2, n = 1, their position) and plays (kind 4,
    # n = 1, their position, secs = seconds listened); experiment_id NULL: served outside any experiment;
    # teams / team: interleaved pages and the clicks and plays on them (NULL otherwise)
    "CREATE TEMP TABLE IF NOT EXISTS ingest_fresh (kind smallint, experiment_id bigint, variant_id bigint, "
    "user_key bigint, n int, position int, secs double precision, day date, at timestamptz, teams smallint[], "
    "team smallint) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS ingest_user_days (experiment_id bigint, variant_id bigint, user_key bigint, "
    "day date, " + ", ".join(f"{short} {_SUM_TYPES.get(short, 'bigint')}" for _, short in _SUMS)
    + ") ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS ingest_moments_delta (experiment_id bigint, variant_id bigint, day date, "
    + ", ".join(f"{name} {'double precision' if 'seconds' in name else 'bigint'}" for name in _M)
    + ") ON COMMIT DELETE ROWS",
)

_STEPS = (
    # 2. raw events; keep only those that were new. A page is in Page since it was served: it is new to the
    # aggregates while its outbox row is still there, and taking the row out (under its row lock) is what
    # claims it, so a batch sent twice, even to two workers at once, folds each page in once.
    f"""WITH gone AS (
        DELETE FROM {OUTBOX} WHERE id = ANY(ARRAY(SELECT id FROM ingest_staging WHERE kind = {RECOMMENDATION}))
        AND kind = {RECOMMENDATION} RETURNING request_id),
    pg AS (  -- k NULL: no such page (never from serving, which writes both in one statement): refused below
        SELECT p.experiment_id, p.variant_id, p.user_key, cardinality(p.track_ids) AS k, p.created_at, p.teams
        FROM gone LEFT JOIN {_T['page']} p USING (request_id)),
    clk AS (
        INSERT INTO {_T['click']} (event_id, request_id, experiment_id, variant_id, user_key, track_id, position,
                                   client_time, created_at, team)
        SELECT event_id, request_id, experiment_id, variant_id, user_key, track_id, position, client_time, created_at,
               team
        FROM ingest_staging WHERE kind = {CLICK}
        ON CONFLICT (event_id) DO NOTHING
        RETURNING experiment_id, variant_id, user_key, position, created_at, team),
    ply AS (
        INSERT INTO {_T['play']} (event_id, request_id, experiment_id, variant_id, user_key, track_id, position,
                                  listened_seconds, skipped, client_time, created_at, team)
        SELECT event_id, request_id, experiment_id, variant_id, user_key, track_id, position, listened_seconds,
               skipped, client_time, created_at, team
        FROM ingest_staging WHERE kind = {PLAY}
        ON CONFLICT (event_id) DO NOTHING
        RETURNING experiment_id, variant_id, user_key, position, listened_seconds, created_at, team)
    INSERT INTO ingest_fresh
    SELECT {RECOMMENDATION}, experiment_id, variant_id, user_key, k, NULL, NULL::float8,
           (created_at AT TIME ZONE 'UTC')::date, created_at, teams, NULL::smallint FROM pg
    UNION ALL
    SELECT {CLICK}, experiment_id, variant_id, user_key, 1, position, NULL, (created_at AT TIME ZONE 'UTC')::date,
           created_at, NULL, team FROM clk
    UNION ALL
    SELECT {PLAY}, experiment_id, variant_id, user_key, 1, position, listened_seconds,
           (created_at AT TIME ZONE 'UTC')::date, created_at, NULL, team FROM ply""",
    f"SELECT pg_advisory_xact_lock({AGGREGATES_LOCK})",
    # 3a. first exposure (idempotent by the unique key, so duplicates may take part)
    f"""INSERT INTO {_T['assignment']} (experiment_id, variant_id, user_key, user_id, first_exposure_at)
    SELECT DISTINCT ON (experiment_id, user_key) experiment_id, variant_id, user_key, user_id, created_at
    FROM ingest_staging WHERE kind = {RECOMMENDATION} AND experiment_id IS NOT NULL
    ORDER BY experiment_id, user_key, created_at
    ON CONFLICT (experiment_id, user_key) DO NOTHING""",
    # 3b. per position: a page adds one impression to each of its positions 1..k (temp-table work only)
    f"""INSERT INTO {_T['position']} (experiment_id, variant_id, position, impressions, clicks)
    SELECT experiment_id, variant_id, position, sum(imp), sum(clk) FROM (
        SELECT f.experiment_id, f.variant_id, g.p AS position, count(*) AS imp, 0 AS clk
        FROM ingest_fresh f, generate_series(1, f.n) AS g(p)
        WHERE f.kind = {RECOMMENDATION} AND f.experiment_id IS NOT NULL GROUP BY 1, 2, 3
        UNION ALL
        SELECT experiment_id, variant_id, position, 0, count(*) FROM ingest_fresh
        WHERE kind = {CLICK} AND experiment_id IS NOT NULL GROUP BY 1, 2, 3) x
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, variant_id, position) DO UPDATE
    SET impressions = {_T['position']}.impressions + EXCLUDED.impressions,
        clicks = {_T['position']}.clicks + EXCLUDED.clicks""",
    # 3c. all traffic per user and day, in an experiment or not (CUPED's pre-period); before 3e, which reads it
    f"""INSERT INTO {_T['traffic']} (user_key, day, {_COLS})
    SELECT user_key, day, {_sums_of_fresh()} FROM ingest_fresh GROUP BY user_key, day ORDER BY 1, 2
    {_upsert_sums(_T['traffic'], 'user_key, day')}""",
    # 3c'. interleaving: per user and day, pages, first picks of team A, each team's credits (clicks) and long
    # listens (plays of its items of >= LONG_LISTEN_SECONDS) ...
    f"""INSERT INTO {_T['il_user']} (experiment_id, user_key, day, pages, a_first, credits_a, credits_b,
                                     listens_a, listens_b)
    SELECT experiment_id, user_key, day, count(*) FILTER (WHERE kind = {RECOMMENDATION}),
           count(*) FILTER (WHERE kind = {RECOMMENDATION} AND teams[1] = 1),
           count(*) FILTER (WHERE kind = {CLICK} AND team = 1), count(*) FILTER (WHERE kind = {CLICK} AND team = 2),
           count(*) FILTER (WHERE kind = {PLAY} AND team = 1 AND secs >= {LONG_LISTEN_SECONDS}),
           count(*) FILTER (WHERE kind = {PLAY} AND team = 2 AND secs >= {LONG_LISTEN_SECONDS})
    FROM ingest_fresh WHERE experiment_id IS NOT NULL AND (teams IS NOT NULL OR team IS NOT NULL)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, user_key, day) DO UPDATE
    SET pages = {_T['il_user']}.pages + EXCLUDED.pages, a_first = {_T['il_user']}.a_first + EXCLUDED.a_first,
        credits_a = {_T['il_user']}.credits_a + EXCLUDED.credits_a,
        credits_b = {_T['il_user']}.credits_b + EXCLUDED.credits_b,
        listens_a = {_T['il_user']}.listens_a + EXCLUDED.listens_a,
        listens_b = {_T['il_user']}.listens_b + EXCLUDED.listens_b""",
    # ... and per position: pages, slots held by team B, and each team's credits
    f"""INSERT INTO {_T['il_position']} (experiment_id, position, pages, slots_b, clicks_a, clicks_b)
    SELECT experiment_id, position, sum(pages), sum(slots_b), sum(clicks_a), sum(clicks_b) FROM (
        SELECT f.experiment_id, g.p::int AS position, count(*) AS pages, count(*) FILTER (WHERE g.team = 2) AS slots_b,
               0 AS clicks_a, 0 AS clicks_b
        FROM ingest_fresh f, unnest(f.teams) WITH ORDINALITY AS g(team, p)
        WHERE f.kind = {RECOMMENDATION} AND f.teams IS NOT NULL AND f.experiment_id IS NOT NULL GROUP BY 1, 2
        UNION ALL
        SELECT experiment_id, position, 0, 0, count(*) FILTER (WHERE team = 1), count(*) FILTER (WHERE team = 2)
        FROM ingest_fresh WHERE kind = {CLICK} AND team IS NOT NULL AND experiment_id IS NOT NULL GROUP BY 1, 2) x
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (experiment_id, position) DO UPDATE
    SET pages = {_T['il_position']}.pages + EXCLUDED.pages, slots_b = {_T['il_position']}.slots_b + EXCLUDED.slots_b,
        clicks_a = {_T['il_position']}.clicks_a + EXCLUDED.clicks_a,
        clicks_b = {_T['il_position']}.clicks_b + EXCLUDED.clicks_b""",
    # 3d. per experiment, user and day, this batch only (the moments below walk a user's days in order; no table
    # keeps them: nothing reads per-experiment user-days that UserDailyTraffic and the moments do not already give)
    f"""INSERT INTO ingest_user_days
    SELECT experiment_id, min(variant_id), user_key, day, {_sums_of_fresh()}
    FROM ingest_fresh WHERE experiment_id IS NOT NULL GROUP BY experiment_id, user_key, day""",
    # 3e. per user over the experiment, and the moments of the cumulative per-user values.
    # A user new to the experiment gets the sums of their traffic on the experiment's pre_period_days days before
    # the day of their first event in it (the lateral sum runs for new users only).
    # old = new - delta of this batch (RETURNING gives the value after our own update, under the row lock);
    # a user with events on several days in one batch is walked day by day, so the moments telescope.
    f"""WITH batch AS (
        SELECT experiment_id, min(variant_id) AS variant_id, user_key,
               {", ".join(f"sum({short}) AS {short}" for _, short in _SUMS)}
        FROM ingest_user_days GROUP BY experiment_id, user_key),
    seen AS (
        SELECT experiment_id, user_key, min(at) AS first_at, max(at) AS last_at
        FROM ingest_fresh WHERE experiment_id IS NOT NULL GROUP BY experiment_id, user_key),
    upserted AS (
        INSERT INTO {_T['user']} (experiment_id, variant_id, user_key, {_COLS}, first_seen, last_seen,
                                  {", ".join(f"pre_{col}" for col, _ in _SUMS)})
        SELECT b.experiment_id, b.variant_id, b.user_key, {", ".join(f"b.{short}" for _, short in _SUMS)},
               s.first_at, s.last_at, {", ".join(f"coalesce(pre.{short}, 0)" for _, short in _SUMS)}
        FROM batch b JOIN seen s USING (experiment_id, user_key)
        LEFT JOIN {_T['experiment']} e ON e.id = b.experiment_id
        LEFT JOIN LATERAL (
            SELECT {", ".join(f"sum(t.{col}) AS {short}" for col, short in _SUMS)} FROM {_T['traffic']} t
            WHERE NOT EXISTS (SELECT 1 FROM {_T['user']} x WHERE x.experiment_id = b.experiment_id
                              AND x.user_key = b.user_key)
              AND t.user_key = b.user_key
              AND t.day >= (s.first_at AT TIME ZONE 'UTC')::date - coalesce(e.pre_period_days, 0)
              AND t.day < (s.first_at AT TIME ZONE 'UTC')::date) pre ON true
        ORDER BY b.experiment_id, b.user_key
        ON CONFLICT (experiment_id, user_key) DO UPDATE
        SET {", ".join(f"{col} = {_T['user']}.{col} + EXCLUDED.{col}" for col, _ in _SUMS)},
            first_seen = LEAST({_T['user']}.first_seen, EXCLUDED.first_seen),
            last_seen = GREATEST({_T['user']}.last_seen, EXCLUDED.last_seen)
        RETURNING experiment_id, variant_id, user_key, {_COLS}, {", ".join(f"pre_{col}" for col, _ in _SUMS)},
                  (xmax = 0) AS inserted),
    {variant_moments.worker_ctes("upserted", "batch", _SUMS)},
    walked AS (
        SELECT d.experiment_id, d.variant_id, d.user_key, d.day, {", ".join(f"d.{short}" for _, short in _SUMS)},
               {", ".join(f"u.{col} - b.{short} + sum(d.{short}) OVER w - d.{short} AS o_{short}"
                          for col, short in _SUMS)},
               row_number() OVER w = 1 AND u.impressions = b.imp AND u.clicks = b.clk AND u.plays = b.ply AS is_new
        FROM ingest_user_days d
        JOIN batch b USING (experiment_id, user_key)
        JOIN upserted u USING (experiment_id, user_key)
        WINDOW w AS (PARTITION BY d.experiment_id, d.user_key ORDER BY d.day))
    INSERT INTO ingest_moments_delta (experiment_id, variant_id, day, {", ".join(_M)})
    SELECT experiment_id, variant_id, day, {", ".join(expr for _, expr in _MOMENTS)}
    FROM walked GROUP BY experiment_id, variant_id, day""",
    # a day's first row starts from the previous day's cumulative moments
    f"""INSERT INTO {_T['moments']} (experiment_id, variant_id, day, {", ".join(_M)})
    SELECT d.experiment_id, d.variant_id, d.day, {", ".join(f"coalesce(p.{name}, 0)" for name in _M)}
    FROM ingest_moments_delta d
    LEFT JOIN LATERAL (SELECT * FROM {_T['moments']} m WHERE m.experiment_id = d.experiment_id
                       AND m.variant_id = d.variant_id AND m.day < d.day ORDER BY m.day DESC LIMIT 1) p ON true
    ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, variant_id, day) DO NOTHING""",
    # a day's change is also a change of every later day's cumulative values
    f"""UPDATE {_T['moments']} m SET {", ".join(f"{name} = m.{name} + a.{name}" for name in _M)}
    FROM (SELECT m2.id, {", ".join(f"sum(d.{name}) AS {name}" for name in _M)}
          FROM {_T['moments']} m2 JOIN ingest_moments_delta d
            ON d.experiment_id = m2.experiment_id AND d.variant_id = m2.variant_id AND m2.day >= d.day
          GROUP BY m2.id) a
    WHERE m.id = a.id""",
)

# An id array keeps this an index probe per row (the temp table has no statistics to plan a join with).
_CONFIRM = f"DELETE FROM {OUTBOX} WHERE id = ANY(ARRAY(SELECT id FROM ingest_staging))"


_prepared_sessions: weakref.WeakSet = weakref.WeakSet()  # connections that have the temp tables


@dataclass(frozen=True)
class IngestResult:
    received: int  # outbox rows in the batch: pages + clicks + plays
    impressions: int  # newly landed items (k per new page)
    clicks: int  # newly landed clicks
    seconds: float
    quarantined: int = 0  # outbox rows moved aside because they could not be landed
    pages: int = 0  # newly landed pages
    plays: int = 0  # newly landed plays


def _copy_columns(copy_text: str) -> str:
    """The columns a batch carries: ``COPY_COLUMNS``, or the prefix of it that an older relay sent (a message
    queued in the broker across an upgrade; the columns added since stay NULL)."""
    fields = copy_text.count("\t", 0, copy_text.find("\n")) + 1
    if fields >= len(COPY_COLUMNS):
        return COLUMNS_SQL
    return ", ".join(COPY_COLUMNS[:fields])


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
        with cursor.cursor.copy(f"COPY ingest_staging ({_copy_columns(copy_text)}) FROM STDIN") as copy:
            copy.write(copy_text)
        kinds = ", ".join(map(str, KINDS))
        cursor.execute(f"SELECT id, kind FROM ingest_staging WHERE kind NOT IN ({kinds}) LIMIT 1")
        unknown = cursor.fetchone()
        if unknown is not None:  # never confirmed unlanded: the batch fails, and the row is quarantined alone
            raise ValueError(f"outbox row {unknown[0]} has kind {unknown[1]}: the worker lands pages (3), "
                             "clicks (2) and plays (4)")
        cursor.execute("SELECT count(*) FROM ingest_staging")
        received = cursor.fetchone()[0]
        cursor.execute(_STEPS[0])
        cursor.execute(f"SELECT count(*) FROM ingest_fresh WHERE kind = {RECOMMENDATION} AND n IS NULL")
        if cursor.fetchone()[0]:  # never confirmed unlanded: the batch fails, and the row is quarantined alone
            raise ValueError("a recommendation row names a request that has no page in Page")
        for statement in _STEPS[1:]:
            cursor.execute(statement)
        cursor.execute(f"SELECT coalesce(sum(n) FILTER (WHERE kind = {RECOMMENDATION}), 0), "
                       f"count(*) FILTER (WHERE kind = {RECOMMENDATION}), count(*) FILTER (WHERE kind = {CLICK}), "
                       f"count(*) FILTER (WHERE kind = {PLAY}) FROM ingest_fresh")
        impressions, new_pages, clicks, plays = cursor.fetchone()
        cursor.execute(_CONFIRM)
    if created and not nested:  # committed: the temp tables now live as long as the session
        _prepared_sessions.add(connection.connection)
    return IngestResult(received=received, impressions=impressions, clicks=clicks,
                        seconds=time.perf_counter() - started, pages=new_pages, plays=plays)


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
                            quarantined=sum(p.quarantined for p in parts), pages=sum(p.pages for p in parts),
                            plays=sum(p.plays for p in parts))


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
