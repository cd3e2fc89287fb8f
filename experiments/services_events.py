"""The API's writes: serve a recommendation and record its impressions; record click batches.

Both only append to the PostgreSQL outbox (``EventOutbox``), in one statement and so in
the request's own transaction: the HTTP answer goes out after the events are durable,
and the relay and the worker (``services_relay``, ``services_ingest``) do the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.utils import timezone

from experiments.assignment import assign_variant, user_key
from experiments.event_ids import click_event_id, impression_event_id, impression_event_id_sql, new_request_id
from experiments.models import Click, EventOutbox, Impression
from experiments.selectors import (
    NEIGHBOURS_SELECT,
    Neighbour,
    ServingArm,
    knn_ctes,
    knn_params,
    nearest_to_track,
    neighbours_from_rows,
    server_bound_cursor,
    serving_config,
)

OUTBOX = EventOutbox._meta.db_table
IMPRESSION_KIND = int(EventOutbox.Kind.IMPRESSION)
RECOMMENDATION_KIND = int(EventOutbox.Kind.RECOMMENDATION)
CLICK_KIND = int(EventOutbox.Kind.CLICK)


class NoArmAvailableError(LookupError):
    """Nothing to serve: no experiment runs and no model is active for the baseline arm."""


@dataclass(frozen=True)
class Recommendation:
    request_id: uuid.UUID
    experiment_id: int | None  # None: no experiment runs, or the user is outside its traffic fraction
    experiment_name: str | None
    variant: str | None
    model_id: int
    model: str
    items: list[Neighbour]
    recorded: bool  # impressions went to the outbox (the user is in the analysis)


def recommend(*, user_id: str, seed_track_id: int, k: int, exclude: Sequence[int] = (),
              record: bool = True) -> Recommendation:
    """The user's arm -> KNN around the seed -> one impression per item shown (when in the experiment).

    ``record=False`` (an HTTP HEAD: nothing is shown to anybody) computes the same answer and writes nothing."""
    config = serving_config()
    experiment = config.experiment
    variant = None
    if experiment is not None:
        assigned = assign_variant(experiment.salt, user_id, experiment.arms, experiment.traffic_fraction)
        serving_variant = experiment.variants[assigned.variant_key]
        arm: ServingArm = serving_variant.arm
        if assigned.in_experiment and record:
            variant = serving_variant
    elif config.fallback is not None:
        arm = config.fallback
    else:
        raise NoArmAvailableError("no experiment is running and no embedding model is active for the baseline arm")
    request_id = new_request_id()
    if variant is None:
        items = nearest_to_track(arm, seed_track_id, k, exclude)
    else:
        items = _nearest_recorded(arm, seed_track_id, k, exclude, request_id, experiment.experiment_id,
                                  variant.variant_id, user_id)
    return Recommendation(
        request_id=request_id,
        experiment_id=experiment.experiment_id if variant is not None else None,
        experiment_name=experiment.name if variant is not None else None,
        variant=variant.key if variant is not None else None,
        model_id=arm.model_id, model=arm.label, items=items, recorded=variant is not None,
    )


# One outbox row for the whole recommendation (the worker expands it into one impression per item).
# No row when the KNN found nothing; the HAVING keeps the aggregate from making an empty one.
_RECORD_IMPRESSIONS_CTE = (
    f", recorded AS (INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, "
    f"user_id, track_id, position, score, client_time, created_at, track_ids, scores) "
    f"SELECT {RECOMMENDATION_KIND}, %(request)s::uuid, %(request)s::uuid, %(experiment)s::bigint, "
    f"%(variant)s::bigint, %(user_key)s::bigint, %(user_id)s::text, 0, 0, NULL, NULL, %(now)s::timestamptz, "
    f"array_agg(track_id ORDER BY distance, track_id), array_agg(1 - distance ORDER BY distance, track_id) "
    f"FROM near WHERE distance IS NOT NULL HAVING count(*) > 0)"
)


def _nearest_recorded(arm: ServingArm, seed_track_id: int, k: int, exclude: Sequence[int], request_id: uuid.UUID,
                      experiment_id: int, variant_id: int, user_id: str) -> list[Neighbour]:
    """The KNN and the outbox row of what was shown, in ONE statement (one round trip, its own transaction)."""
    params = knn_params(seed_track_id, exclude)
    params.update({
        "request": request_id, "experiment": experiment_id, "variant": variant_id, "user_key": user_key(user_id),
        "user_id": user_id, "now": timezone.now(),
    })
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ctes(arm, k) + _RECORD_IMPRESSIONS_CTE + NEIGHBOURS_SELECT, params)
        rows = cursor.fetchall()
    return neighbours_from_rows(arm, seed_track_id, rows)


# --- Clicks -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ClickEvent:
    event_id: uuid.UUID
    request_id: uuid.UUID
    track_id: int
    position: int
    client_time: datetime | None = None


@dataclass
class ClickBatchResult:
    accepted: int = 0  # new clicks, each counted once
    # a click on an impression that already has one (same event id resent, or a new id for the same
    # request and position, earlier or in this batch): acknowledged, not counted again
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (event_id, reason), never counted


class RejectReason:
    UNKNOWN_REQUEST = "no impression recorded for this request_id (unknown request, or a user outside the experiment)"
    POSITION_NOT_SHOWN = "position was not shown in this request"
    TRACK_MISMATCH = "track was not shown at this position in this request"


# Every impression of the requests named, wherever it is now: still a recommendation row in the outbox
# (expanded here), an impression row in the outbox (the worker's input format), or landed in Impression.
_SHOWN_SQL = (
    f"SELECT {impression_event_id_sql('o.request_id', 'u.position')}, u.track_id, o.experiment_id, o.variant_id, "
    f"o.user_key FROM {OUTBOX} o, unnest(o.track_ids) WITH ORDINALITY AS u(track_id, position) "
    f"WHERE o.event_id = ANY(%(requests)s::uuid[]) AND o.kind = {RECOMMENDATION_KIND} "
    f"UNION ALL SELECT event_id, track_id, experiment_id, variant_id, user_key FROM {OUTBOX} "
    f"WHERE event_id = ANY(%(impressions)s::uuid[]) AND kind = {IMPRESSION_KIND} "
    f"UNION ALL SELECT event_id, track_id, experiment_id, variant_id, user_key "
    f"FROM {Impression._meta.db_table} WHERE event_id = ANY(%(impressions)s::uuid[])"
)
_KNOWN_SQL = (
    f"SELECT event_id FROM {OUTBOX} WHERE event_id = ANY(%(events)s::uuid[]) "
    f"UNION ALL SELECT event_id FROM {Click._meta.db_table} WHERE event_id = ANY(%(events)s::uuid[])"
)
_CLICKS_SQL = (
    f"INSERT INTO {OUTBOX} (kind, event_id, request_id, experiment_id, variant_id, user_key, user_id, "
    f"track_id, position, score, client_time, created_at) "
    f"SELECT {CLICK_KIND}, e, r, x, v, u, '', t, p, NULL, c, %(now)s FROM unnest(%(events)s::uuid[], "
    f"%(requests)s::uuid[], %(experiments)s::bigint[], %(variants)s::bigint[], %(users)s::bigint[], "
    f"%(tracks)s::bigint[], %(positions)s::int[], %(client_times)s::timestamptz[]) AS z(e, r, x, v, u, t, p, c) "
    f"ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def clicks_record(events: Sequence[ClickEvent]) -> ClickBatchResult:
    """Validate clicks against the impressions shown and append the valid new ones to the outbox.

    A click is stored under ``click_event_id(request, position)``, not the client's id: one
    counted click per impression by construction, so a user's clicks never outnumber the
    impressions they were shown, whatever ids a client makes up.

    The impression a click points at has a derived id (``impression_event_id``), looked up by
    unique key in the outbox (its recommendation row) and in ``Impression``: a statement sees
    one snapshot, and the worker moves a recommendation from one to the other in one
    transaction, so the UNION finds every shown impression exactly once.
    """
    result = ClickBatchResult()
    if not events:
        return result
    counted_ids = [click_event_id(e.request_id, e.position) for e in events]
    # every recorded request has a position 1, which tells "unknown request" from "position not shown"
    wanted = {impression_event_id(e.request_id, e.position) for e in events if e.position >= 1}
    wanted |= {impression_event_id(e.request_id, 1) for e in events}
    with connection.cursor() as cursor:
        cursor.execute(_KNOWN_SQL, {"events": counted_ids})
        known = {row[0] for row in cursor.fetchall()}
        cursor.execute(_SHOWN_SQL, {"impressions": list(wanted), "requests": list({e.request_id for e in events})})
        shown = {row[0]: row[1:] for row in cursor.fetchall()}
    fresh: list[tuple[uuid.UUID, ClickEvent, tuple]] = []
    seen: set[uuid.UUID] = set()
    for event, counted_id in zip(events, counted_ids, strict=True):
        if counted_id in known or counted_id in seen:
            result.duplicates += 1
            continue
        impression = shown.get(impression_event_id(event.request_id, event.position))
        if impression is None:
            known_request = impression_event_id(event.request_id, 1) in shown
            reason = RejectReason.POSITION_NOT_SHOWN if known_request else RejectReason.UNKNOWN_REQUEST
            result.rejected.append((str(event.event_id), reason))
            continue
        if impression[0] != event.track_id:
            result.rejected.append((str(event.event_id), RejectReason.TRACK_MISMATCH))
            continue
        seen.add(counted_id)
        fresh.append((counted_id, event, impression))
    if fresh:
        with connection.cursor() as cursor:
            cursor.execute(_CLICKS_SQL, {
                "now": timezone.now(),
                "events": [c for c, _, _ in fresh], "requests": [e.request_id for _, e, _ in fresh],
                "experiments": [imp[1] for _, _, imp in fresh], "variants": [imp[2] for _, _, imp in fresh],
                "users": [imp[3] for _, _, imp in fresh], "tracks": [e.track_id for _, e, _ in fresh],
                "positions": [e.position for _, e, _ in fresh], "client_times": [e.client_time for _, e, _ in fresh],
            })
            inserted = len(cursor.fetchall())
        result.accepted += inserted
        result.duplicates += len(fresh) - inserted  # raced with a concurrent click on the same impression
    return result
