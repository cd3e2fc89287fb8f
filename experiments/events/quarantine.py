"""Outbox rows that cannot be landed: moved aside whole, counted, visible, and re-playable.

The worker lands a relay batch in one transaction. When that transaction fails for a
reason that is not the database being away (a constraint, a value out of range, a bug
that one row triggers), ``ingest_or_quarantine`` splits the batch in halves until the
failing rows stand alone, lands everything else, and moves each failing row from the
outbox into ``EventQuarantine`` with the error (same id and columns). Without this, the
relay would re-send the row forever and, once ``max_inflight`` such batches wait, stop
sending anything at all.

A quarantined row is never lost: ``manage.py replay_quarantine`` (or the admin action)
moves it back into the outbox, where the relay's sweep picks it up again.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction

from experiments.events.outbox import COLUMNS_SQL as _COLUMNS
from experiments.events.outbox import OUTBOX
from experiments.models import EventQuarantine

QUARANTINE = EventQuarantine._meta.db_table

_MOVE_TO_QUARANTINE = (
    f"WITH moved AS (DELETE FROM {OUTBOX} WHERE id = ANY(%s::bigint[]) RETURNING {_COLUMNS}) "
    f"INSERT INTO {QUARANTINE} ({_COLUMNS}, error, quarantined_at) SELECT {_COLUMNS}, %s, now() FROM moved "
    f"ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, quarantined_at = EXCLUDED.quarantined_at"
)
# Back into the outbox under the same id (free: the row left it); an event that reached the outbox again
# meanwhile (same event_id) is not duplicated.
_MOVE_TO_OUTBOX = (
    f"WITH moved AS (DELETE FROM {QUARANTINE} WHERE {{where}} RETURNING {_COLUMNS}) "
    f"INSERT INTO {OUTBOX} ({_COLUMNS}) SELECT {_COLUMNS} FROM moved ON CONFLICT DO NOTHING"
)


def quarantine_rows(ids: Sequence[int], error: str) -> int:
    """Move these outbox rows into the quarantine with ``error``; returns how many moved."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_MOVE_TO_QUARANTINE, [list(ids), error[:4000]])
        return cursor.rowcount


def replay_quarantined(ids: Sequence[int] | None = None) -> int:
    """Move quarantined rows (all, or these ids) back into the outbox; returns how many."""
    where, params = ("true", []) if ids is None else ("id = ANY(%s::bigint[])", [list(ids)])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_MOVE_TO_OUTBOX.format(where=where), params)
        return cursor.rowcount


def quarantine_count() -> int:
    return EventQuarantine.objects.count()
