"""Click batches from players: each click is checked against the page its request showed, and at most one
click per impression is ever counted (``click_event_id``), whatever ids the client sends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.utils import timezone

from experiments.events.ids import click_event_id
from experiments.events.outbox import INSERT_CLICKS_SQL, KNOWN_CLICKS_SQL, SHOWN_SQL


@dataclass(frozen=True)
class ClickEvent:
    event_id: uuid.UUID
    request_id: uuid.UUID
    track_id: int
    position: int
    client_time: datetime | None = None


@dataclass
class EventBatchResult:
    accepted: int = 0  # new events, each counted once
    # an event on an impression that already has one of its kind (same event id resent, or a new id for the
    # same request and position, earlier or in this batch): acknowledged, not counted again
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (event_id, reason), never counted

    def __iadd__(self, other: EventBatchResult) -> EventBatchResult:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        return self


class RejectReason:
    UNKNOWN_REQUEST = "no page recorded for this request_id (unknown request, or one answered to a HEAD)"
    POSITION_NOT_SHOWN = "position was not shown in this request"
    TRACK_MISMATCH = "track was not shown at this position in this request"
    NOT_CLICKED = "no click recorded on this item: a play follows a click on it (earlier or in the same batch)"


def shown_track(page: tuple | None, position: int, track_id: int) -> str | None:
    """Why an event naming (``position``, ``track_id``) does not match ``page`` (a ``SHOWN_SQL`` row less its
    request id), or None when it does: an array index, no search."""
    if page is None:
        return RejectReason.UNKNOWN_REQUEST
    track_ids = page[0]
    if not 1 <= position <= len(track_ids):
        return RejectReason.POSITION_NOT_SHOWN
    if track_ids[position - 1] != track_id:
        return RejectReason.TRACK_MISMATCH
    return None


def item_team(page: tuple, position: int) -> int | None:
    """The team that drafted the item at ``position`` of an interleaved ``page`` (a ``SHOWN_SQL`` row less its
    request id), None on an A/B page: the team a click or a play on that item credits."""
    teams = page[4]
    return int(teams[position - 1]) if teams else None


def item_event_params(fresh: Sequence[tuple[uuid.UUID, ClickEvent, tuple]]) -> dict:
    """The outbox insert's column arrays for new item events (clicks, plays): (counted id, event, (experiment,
    variant, user key, team)) each; the events carry request, track, position and client time."""
    return {
        "now": timezone.now(),
        "events": [counted for counted, _, _ in fresh], "requests": [e.request_id for _, e, _ in fresh],
        "experiments": [shown[0] for _, _, shown in fresh], "variants": [shown[1] for _, _, shown in fresh],
        "users": [shown[2] for _, _, shown in fresh], "tracks": [e.track_id for _, e, _ in fresh],
        "positions": [e.position for _, e, _ in fresh], "client_times": [e.client_time for _, e, _ in fresh],
        "teams": [shown[3] for _, _, shown in fresh],
    }


def clicks_record(events: Sequence[ClickEvent]) -> EventBatchResult:
    """Validate clicks against the impressions shown and append the valid new ones to the outbox.

    A click is stored under ``click_event_id(request, position)``, not the client's id: one
    counted click per impression by construction, so a user's clicks never outnumber the
    impressions they were shown, whatever ids a client makes up.

    The page a click points at is found by its request id in ``Page`` (``SHOWN_SQL``), and the click's
    position indexes its ``track_ids`` (and, on an interleaved page, its ``teams``).
    """
    result = EventBatchResult()
    if not events:
        return result
    counted_ids = [click_event_id(e.request_id, e.position) for e in events]
    with connection.cursor() as cursor:
        cursor.execute(KNOWN_CLICKS_SQL, {"events": counted_ids})
        known = {row[0] for row in cursor.fetchall()}
        cursor.execute(SHOWN_SQL, {"requests": list({e.request_id for e in events})})
        # request -> (track_ids, experiment, variant, user, teams or None)
        pages = {row[0]: row[1:] for row in cursor.fetchall()}
    fresh: list[tuple[uuid.UUID, ClickEvent, tuple]] = []
    seen: set[uuid.UUID] = set()
    for event, counted_id in zip(events, counted_ids, strict=True):
        if counted_id in known or counted_id in seen:
            result.duplicates += 1
            continue
        page = pages.get(event.request_id)
        reason = shown_track(page, event.position, event.track_id)
        if reason is not None:
            result.rejected.append((str(event.event_id), reason))
            continue
        seen.add(counted_id)
        fresh.append((counted_id, event, (*page[1:4], item_team(page, event.position))))
    if fresh:
        with connection.cursor() as cursor:
            cursor.execute(INSERT_CLICKS_SQL, item_event_params(fresh))
            inserted = len(cursor.fetchall())
        result.accepted += inserted
        result.duplicates += len(fresh) - inserted  # raced with a concurrent click on the same impression
    return result
