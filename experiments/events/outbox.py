"""The outbox: the ONE place that knows the format of an accepted event on its way to the worker.

The API appends events to ``EventOutbox`` inside the request's own transaction (the answer
goes out after they are durable); the relay (``events.relay``) carries rows to the worker as
PostgreSQL COPY text in ``COPY_COLUMNS`` order; the worker (``events.ingest``) lands them and
deletes them. Kinds of row:

- ``RECOMMENDATION``: one narrow row per page served to a user. The page itself (its items as
  arrays) is written to ``Page`` by the same serving statement, so it is stored once, at serving
  time, and a click can be checked against it at once; the outbox row only tells the worker to
  fold the page into the aggregates (``event_id`` = ``request_id``, not indexed: a page is unique
  by its request id already). ``experiment_id`` / ``variant_id`` are NULL outside any experiment.
  A page of an interleaving experiment also has ``Page.teams`` (the team that drafted each item).
- ``CLICK``: one row per counted click, ``event_id`` = ``click_event_id(request, position)``.
- ``PLAY`` (4): one row per counted play, ``event_id`` = ``play_event_id(request, position)``, with
  ``listened_seconds`` and ``skipped`` (NULL on the other kinds).
- On an interleaved page a click's or a play's ``team`` is its item's team, copied from the page when the
  event is accepted (so the worker credits it without looking the page up, in whatever order batches land).
- ``IMPRESSION`` (1): per-item rows of platforms older than migration 0003; migration 0006
  folds any left in the outbox into recommendation rows, and nothing writes them any more.
"""

from __future__ import annotations

from django.db import connection

from experiments.models import EVENT_ID_UNIQUE_WHERE, Click, EventOutbox, Page, Play

OUTBOX = EventOutbox._meta.db_table
PAGE = Page._meta.db_table
CLICK = int(EventOutbox.Kind.CLICK)
RECOMMENDATION = int(EventOutbox.Kind.RECOMMENDATION)
PLAY = int(EventOutbox.Kind.PLAY)
KINDS = (CLICK, RECOMMENDATION, PLAY)  # what the worker lands
# Columns carried from the outbox to the worker, in COPY order (relay, ingest and quarantine use this list).
# New columns go at the end: text from an older relay (a message still in the broker across an upgrade) is
# then a prefix of this list, which the worker reads as such (``ingest_copy_batch``).
COPY_COLUMNS = ("id", "kind", "event_id", "request_id", "experiment_id", "variant_id", "user_key", "user_id",
                "track_id", "position", "score", "client_time", "created_at", "listened_seconds", "skipped", "team")
COLUMNS_SQL = ", ".join(COPY_COLUMNS)


def copy_records(copy_text: str) -> list[str]:
    """The records of COPY text, split on its record separator only.

    COPY writes a newline inside a value as the two characters backslash and ``n``, so a real
    newline ends a record and nothing else does. ``str.splitlines()`` would also split on U+2028,
    U+2029, U+0085 and other characters a value may hold (that split once stopped the relay on
    one request's user id)."""
    records = copy_text.split("\n")
    if records and records[-1] == "":
        records.pop()
    return records


def outbox_copy_text(limit: int, after_id: int = 0) -> tuple[str, int]:
    """Up to ``limit`` outbox rows above ``after_id`` as COPY text, and the last id (0 when none)."""
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY (SELECT {COLUMNS_SQL} FROM {OUTBOX} WHERE id > {int(after_id)} ORDER BY id LIMIT {int(limit)}) "
        "TO STDOUT"
    ) as copy:
        text = b"".join(bytes(chunk) for chunk in copy).decode("utf-8")
    last = int(text.rsplit("\n", 2)[-2].split("\t", 1)[0]) if text else 0
    return text, last


# --- written by serving -----------------------------------------------------------------------

# The page shown (its items as arrays, position = index + 1) and the outbox row that hands it to the aggregates,
# written by the serving statement itself. No rows when the KNN found nothing: the HAVING keeps the aggregate
# from making an empty page.
RECORD_RECOMMENDATION_CTE = (
    f", shown AS (INSERT INTO {PAGE} (request_id, experiment_id, variant_id, user_key, placement, created_at, "
    f"track_ids, scores) "
    f"SELECT %(request)s::uuid, %(experiment)s::bigint, %(variant)s::bigint, %(user_key)s::bigint, "
    f"%(placement)s::text, %(now)s::timestamptz, array_agg(track_id ORDER BY distance, track_id), "
    f"array_agg(1 - distance ORDER BY distance, track_id) "
    f"FROM near WHERE distance IS NOT NULL HAVING count(*) > 0 RETURNING request_id), "
    f"recorded AS (INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, "
    f"user_id, track_id, position, score, client_time, created_at) "
    f"SELECT {RECOMMENDATION}, request_id, request_id, %(experiment)s::bigint, %(variant)s::bigint, "
    f"%(user_key)s::bigint, %(user_id)s::text, 0, 0, NULL, NULL, %(now)s::timestamptz FROM shown)"
)


# The interleaved page (CTE ``page``: pos, team, track_id, distance, from ``experiments.serving``) into ``Page``
# with each item's team, and its narrow outbox row, exactly as ``RECORD_RECOMMENDATION_CTE`` does for a plain page.
RECORD_INTERLEAVED_CTE = (
    f", shown AS (INSERT INTO {PAGE} (request_id, experiment_id, variant_id, user_key, placement, created_at, "
    f"track_ids, scores, teams) "
    f"SELECT %(request)s::uuid, %(experiment)s::bigint, %(variant)s::bigint, %(user_key)s::bigint, "
    f"%(placement)s::text, %(now)s::timestamptz, array_agg(track_id ORDER BY pos), "
    f"array_agg(1 - distance ORDER BY pos), array_agg(team ORDER BY pos) FROM page HAVING count(*) > 0 "
    f"RETURNING request_id), "
    f"recorded AS (INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, "
    f"user_id, track_id, position, score, client_time, created_at) "
    f"SELECT {RECOMMENDATION}, request_id, request_id, %(experiment)s::bigint, %(variant)s::bigint, "
    f"%(user_key)s::bigint, %(user_id)s::text, 0, 0, NULL, NULL, %(now)s::timestamptz FROM shown)"
)


# --- clicks ---------------------------------------------------------------------------------------

# The pages of the requests named: one primary-key probe each (serving stores the page before it answers).
SHOWN_SQL = (
    f"SELECT request_id, track_ids, experiment_id, variant_id, user_key, teams FROM {PAGE} "
    f"WHERE request_id = ANY(%(requests)s::uuid[])"
)
# Clicks already counted (by their derived id), waiting in the outbox or landed.
KNOWN_CLICKS_SQL = (
    f"SELECT event_id FROM {OUTBOX} WHERE event_id = ANY(%(events)s::uuid[]) AND {EVENT_ID_UNIQUE_WHERE} "
    f"UNION ALL SELECT event_id FROM {Click._meta.db_table} WHERE event_id = ANY(%(events)s::uuid[])"
)
INSERT_CLICKS_SQL = (
    f"INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, user_id, "
    f"track_id, position, score, client_time, created_at, team) "
    f"SELECT {CLICK}, e, r, x, v, u, '', t, p, NULL, c, %(now)s, g FROM unnest(%(events)s::uuid[], "
    f"%(requests)s::uuid[], %(experiments)s::bigint[], %(variants)s::bigint[], %(users)s::bigint[], "
    f"%(tracks)s::bigint[], %(positions)s::int[], %(client_times)s::timestamptz[], %(teams)s::smallint[]) "
    f"AS z(e, r, x, v, u, t, p, c, g) "
    f"ON CONFLICT (event_id) WHERE {EVENT_ID_UNIQUE_WHERE} DO NOTHING RETURNING event_id"
)


# --- plays ----------------------------------------------------------------------------------------

# Plays and clicks already counted (by their derived ids), waiting in the outbox or landed: unique-index probes.
KNOWN_CLICKS_AND_PLAYS_SQL = (
    KNOWN_CLICKS_SQL + f" UNION ALL SELECT event_id FROM {Play._meta.db_table} WHERE event_id = ANY(%(events)s::uuid[])"
)
INSERT_PLAYS_SQL = (
    f"INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, user_id, "
    f"track_id, position, score, client_time, created_at, listened_seconds, skipped, team) "
    f"SELECT {PLAY}, e, r, x, v, u, '', t, p, NULL, c, %(now)s, s, k, g FROM unnest(%(events)s::uuid[], "
    f"%(requests)s::uuid[], %(experiments)s::bigint[], %(variants)s::bigint[], %(users)s::bigint[], "
    f"%(tracks)s::bigint[], %(positions)s::int[], %(client_times)s::timestamptz[], %(seconds)s::float8[], "
    f"%(skipped)s::boolean[], %(teams)s::smallint[]) AS z(e, r, x, v, u, t, p, c, s, k, g) "
    f"ON CONFLICT (event_id) WHERE {EVENT_ID_UNIQUE_WHERE} DO NOTHING RETURNING event_id"
)
