"""Play batches from players: a listen is counted only on an item its user clicked, at most once per clicked item
(``play_event_id``), whatever ids the client sends; and the one entry point for a player's mixed batch.

A play names (request, position, track) like a click, plus the seconds listened and the player's skip flag.
It is checked like a click against the page its request showed (the page's primary key, then an index
into ``track_ids``), and its click is looked up by ``click_event_id``: in the outbox or landed, so it may
have come in an earlier batch or earlier in the same one (``events_record`` records clicks first).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from experiments.events.clicks import (
    ClickEvent,
    EventBatchResult,
    RejectReason,
    clicks_record,
    item_event_params,
    item_team,
    shown_track,
)
from experiments.events.ids import click_event_id, play_event_id
from experiments.events.outbox import INSERT_PLAYS_SQL, KNOWN_CLICKS_AND_PLAYS_SQL, SHOWN_SQL

MAX_LISTENED_SECONDS = 24 * 3600  # a play longer than a day is a broken player, not a listener


@dataclass(frozen=True)
class PlayEvent:
    event_id: uuid.UUID
    request_id: uuid.UUID
    track_id: int
    position: int
    listened_seconds: float
    skipped: bool
    client_time: datetime | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.listened_seconds <= MAX_LISTENED_SECONDS:  # False for NaN too
            raise ValueError(f"listened_seconds must lie in [0, {MAX_LISTENED_SECONDS}], got {self.listened_seconds}")


def plays_record(events: Sequence[PlayEvent]) -> EventBatchResult:
    """Validate plays against the pages shown and the clicks counted; append the valid new ones to the outbox.

    Two index-probe queries (known click and play ids; the pages) and one insert, whatever the batch size."""
    result = EventBatchResult()
    if not events:
        return result
    play_ids = [play_event_id(e.request_id, e.position) for e in events]
    click_ids = [click_event_id(e.request_id, e.position) for e in events]
    with connection.cursor() as cursor:
        cursor.execute(KNOWN_CLICKS_AND_PLAYS_SQL, {"events": play_ids + click_ids})
        known = {row[0] for row in cursor.fetchall()}
        cursor.execute(SHOWN_SQL, {"requests": list({e.request_id for e in events})})
        # request -> (track_ids, experiment, variant, user, teams or None)
        pages = {row[0]: row[1:] for row in cursor.fetchall()}
    fresh: list[tuple[uuid.UUID, PlayEvent, tuple]] = []
    seen: set[uuid.UUID] = set()
    for event, play_id, click_id in zip(events, play_ids, click_ids, strict=True):
        if play_id in known or play_id in seen:
            result.duplicates += 1
            continue
        page = pages.get(event.request_id)
        reason = shown_track(page, event.position, event.track_id)
        if reason is None and click_id not in known:
            reason = RejectReason.NOT_CLICKED
        if reason is not None:
            result.rejected.append((str(event.event_id), reason))
            continue
        seen.add(play_id)
        fresh.append((play_id, event, (*page[1:4], item_team(page, event.position))))
    if fresh:
        with connection.cursor() as cursor:
            cursor.execute(INSERT_PLAYS_SQL, {
                **item_event_params(fresh),
                "seconds": [e.listened_seconds for _, e, _ in fresh], "skipped": [e.skipped for _, e, _ in fresh],
            })
            inserted = len(cursor.fetchall())
        result.accepted += inserted
        result.duplicates += len(fresh) - inserted  # raced with a concurrent post of the same play
    return result


def events_record(clicks: Sequence[ClickEvent], plays: Sequence[PlayEvent]) -> EventBatchResult:
    """A player's batch: its clicks first, then its plays (which may name those clicks), in one transaction."""
    with transaction.atomic():
        result = clicks_record(clicks)
        result += plays_record(plays)
    return result
