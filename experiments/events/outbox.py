"""The outbox: the ONE place that knows the format of an accepted event on its way to the worker.

The API appends events to ``EventOutbox`` inside the request's own transaction (the answer
goes out after they are durable); the relay (``events.relay``) carries rows to the worker as
PostgreSQL COPY text in ``COPY_COLUMNS`` order; the worker (``events.ingest``) lands them and
deletes them. Three kinds of row:

- ``RECOMMENDATION``: one row per page served to a user in an experiment, its items in
  ``track_ids`` / ``scores`` (position = index + 1), ``event_id`` = ``request_id``; the worker
  lands it as one ``Page`` row, whatever k is.
  A page of an interleaving experiment also carries ``teams`` (the team that drafted each item).
- ``CLICK``: one row per counted click, ``event_id`` = ``click_event_id(request, position)``; on an
  interleaved page ``team`` is the clicked item's team, copied from the page when the click is accepted
  (so the worker credits it without looking the page up, in whatever order batches land).
- ``IMPRESSION`` (1): per-item rows of platforms older than migration 0003; migration 0006
  folds any left in the outbox into recommendation rows, and nothing writes them any more.
"""

from __future__ import annotations

from django.db import connection

from experiments.models import Click, EventOutbox, Page

OUTBOX = EventOutbox._meta.db_table
CLICK = int(EventOutbox.Kind.CLICK)
RECOMMENDATION = int(EventOutbox.Kind.RECOMMENDATION)
# Columns carried from the outbox to the worker, in COPY order (relay, ingest and quarantine use this list).
COPY_COLUMNS = ("id", "kind", "event_id", "request_id", "experiment_id", "variant_id", "user_key", "user_id",
                "track_id", "position", "score", "client_time", "created_at", "track_ids", "scores", "teams", "team")
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

# One outbox row for the whole recommendation (the worker expands it into one impression per item).
# No row when the KNN found nothing; the HAVING keeps the aggregate from making an empty one.
RECORD_RECOMMENDATION_CTE = (
    f", recorded AS (INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, "
    f"user_id, track_id, position, score, client_time, created_at, track_ids, scores) "
    f"SELECT {RECOMMENDATION}, %(request)s::uuid, %(request)s::uuid, %(experiment)s::bigint, "
    f"%(variant)s::bigint, %(user_key)s::bigint, %(user_id)s::text, 0, 0, NULL, NULL, %(now)s::timestamptz, "
    f"array_agg(track_id ORDER BY distance, track_id), array_agg(1 - distance ORDER BY distance, track_id) "
    f"FROM near WHERE distance IS NOT NULL HAVING count(*) > 0)"
)


# The interleaved page (CTE ``page``: pos, team, track_id, distance, from ``experiments.serving``) as one row.
RECORD_INTERLEAVED_CTE = (
    f", recorded AS (INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, "
    f"user_id, track_id, position, score, client_time, created_at, track_ids, scores, teams) "
    f"SELECT {RECOMMENDATION}, %(request)s::uuid, %(request)s::uuid, %(experiment)s::bigint, "
    f"%(variant)s::bigint, %(user_key)s::bigint, %(user_id)s::text, 0, 0, NULL, NULL, %(now)s::timestamptz, "
    f"array_agg(track_id ORDER BY pos), array_agg(1 - distance ORDER BY pos), array_agg(team ORDER BY pos) "
    f"FROM page HAVING count(*) > 0)"
)


# --- clicks ---------------------------------------------------------------------------------------

# The pages of the requests named, wherever they are now: still a recommendation row in the outbox, or landed
# in Page. A statement sees one snapshot and the worker moves a page from one to the other in one transaction,
# so the UNION finds each shown page exactly once; both lookups are unique-index probes.
SHOWN_SQL = (
    f"SELECT request_id, track_ids, experiment_id, variant_id, user_key, teams FROM {Page._meta.db_table} "
    f"WHERE request_id = ANY(%(requests)s::uuid[]) "
    f"UNION ALL SELECT request_id, track_ids, experiment_id, variant_id, user_key, teams FROM {OUTBOX} "
    f"WHERE event_id = ANY(%(requests)s::uuid[]) AND kind = {RECOMMENDATION}"
)
# Clicks already counted (by their derived id), waiting in the outbox or landed.
KNOWN_CLICKS_SQL = (
    f"SELECT event_id FROM {OUTBOX} WHERE event_id = ANY(%(events)s::uuid[]) "
    f"UNION ALL SELECT event_id FROM {Click._meta.db_table} WHERE event_id = ANY(%(events)s::uuid[])"
)
INSERT_CLICKS_SQL = (
    f"INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, user_id, "
    f"track_id, position, score, client_time, created_at, team) "
    f"SELECT {CLICK}, e, r, x, v, u, '', t, p, NULL, c, %(now)s, g FROM unnest(%(events)s::uuid[], "
    f"%(requests)s::uuid[], %(experiments)s::bigint[], %(variants)s::bigint[], %(users)s::bigint[], "
    f"%(tracks)s::bigint[], %(positions)s::int[], %(client_times)s::timestamptz[], %(teams)s::smallint[]) "
    f"AS z(e, r, x, v, u, t, p, c, g) "
    f"ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
