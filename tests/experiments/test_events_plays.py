"""Play events: validated against the page and its click, counted once, landed into every aggregate.

The API tests go through Django's HTTP handling (``client``); the end-to-end paths with the relay, a real
Celery worker and a SIGKILLed one are in test_events_pipeline.py, which plays along with clicks.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest
from django.utils import timezone

from experiments.analysis import DAILY_METRIC_FIELDS, daily_metric_moments, user_metric_rows
from experiments.assignment import user_key
from experiments.events.clicks import ClickEvent, RejectReason
from experiments.events.ids import play_event_id
from experiments.events.ingest import drain_outbox, ingest_copy_batch
from experiments.events.outbox import COPY_COLUMNS, PLAY, outbox_copy_text
from experiments.events.plays import PlayEvent, events_record
from experiments.models import (
    Click,
    EventOutbox,
    EventQuarantine,
    Page,
    Play,
    UserAggregate,
    UserDailyTraffic,
)
from experiments.selectors import clear_serving_cache
from experiments.services import VariantSpec, experiment_create, experiment_start
from experiments.serving import recommend
from experiments.stats.aggregates import METRIC_SUMS
from tests.experiments.events_fixtures import assert_aggregates_match_raw_events
from tests.experiments.serving_fixtures import build_world

EVENTS = "/api/v1/events"


@pytest.fixture
def world(db):
    return build_world(n_tracks=40)


def page(client, world, user: str = "lee", k: int = 5) -> dict:
    response = client.get("/api/v1/recommendations", {"user": user, "seed_track": world.tracks[0].pk, "k": k},
                          headers=world.headers)
    assert response.status_code == 200, response.content
    return response.json()


def event(body: dict, at: int, kind: str = "click", **fields) -> dict:
    """A click (or play) of the item at position ``at`` of ``body``'s page; ``fields`` override."""
    out = {"event_id": str(uuid.uuid4()), "type": kind, "request_id": body["request_id"],
           "track": body["items"][at - 1]["track"], "position": at}
    if kind == "play":
        out.update(listened_seconds=42.5, skipped=False)
    return {**out, **fields}


def post(client, world, events: list[dict]):
    return client.post(EVENTS, {"events": events}, content_type="application/json", headers=world.headers)


def test_plays_are_accepted_after_their_click_and_rejected_with_a_reason_otherwise(client, world):
    body = page(client, world)
    earlier = post(client, world, [event(body, 1)]).json()
    assert earlier == {"accepted": 1, "duplicates": 0, "rejected": []}
    events = [
        event(body, 1, "play"),  # its click came in an earlier batch
        event(body, 3, "play", listened_seconds=3.0, skipped=True),  # its click comes later in this batch
        event(body, 3),
        event(body, 2, "play"),  # shown, never clicked
        event(body, 4, "play", request_id=str(uuid.uuid4())),  # unknown request
        event(body, 5, "play", position=9),  # position out of range (k = 5)
        event(body, 4, "play", track=body["items"][1]["track"]),  # another track than position 4 showed
    ]
    answer = post(client, world, events)
    assert answer.status_code == 202, answer.content
    result = answer.json()
    assert (result["accepted"], result["duplicates"]) == (3, 0)  # two plays and a click
    reasons = {r["event_id"]: r["reason"] for r in result["rejected"]}
    assert reasons == {events[3]["event_id"]: RejectReason.NOT_CLICKED,
                       events[4]["event_id"]: RejectReason.UNKNOWN_REQUEST,
                       events[5]["event_id"]: RejectReason.POSITION_NOT_SHOWN,
                       events[6]["event_id"]: RejectReason.TRACK_MISMATCH}
    stored = EventOutbox.objects.filter(kind=PLAY).order_by("position")
    request = uuid.UUID(body["request_id"])
    # stored under the derived id, with the page's experiment, variant and user
    assert [(p.event_id, p.listened_seconds, p.skipped) for p in stored] == [
        (play_event_id(request, 1), 42.5, False), (play_event_id(request, 3), 3.0, True)]
    shown = EventOutbox.objects.get(event_id=request)
    assert {(p.experiment_id, p.variant_id, p.user_key) for p in stored} == {
        (shown.experiment_id, shown.variant_id, shown.user_key)}


def test_a_play_counts_once_whatever_ids_and_resends(client, world):
    body = page(client, world)
    click, play = event(body, 2), event(body, 2, "play")
    first = post(client, world, [click, play, play, {**play, "event_id": str(uuid.uuid4())}]).json()
    assert first == {"accepted": 2, "duplicates": 2, "rejected": []}
    assert post(client, world, [click, play]).json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    drain_outbox()  # landed: still a duplicate
    again = post(client, world, [{**play, "event_id": str(uuid.uuid4()), "listened_seconds": 99.0}]).json()
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert list(Play.objects.values_list("listened_seconds", flat=True)) == [42.5]


@pytest.mark.parametrize("fields, name", [
    ({"listened_seconds": -1}, "listened_seconds"),
    ({"listened_seconds": 24 * 3600 + 1}, "listened_seconds"),
    ({"listened_seconds": "long"}, "listened_seconds"),
    ({"listened_seconds": None}, "listened_seconds"),
    ({"listened_seconds": "NaN"}, "listened_seconds"),
    ({"skipped": "maybe"}, "skipped"),
])
def test_bad_seconds_or_skip_flag_are_a_400_naming_the_field(client, world, fields, name):
    body = page(client, world)
    answer = post(client, world, [event(body, 1), event(body, 1, "play", **fields)])
    assert answer.status_code == 400, answer.content
    assert f"events[1].{name}" in answer.json()["errors"]
    assert not EventOutbox.objects.exclude(kind=EventOutbox.Kind.RECOMMENDATION).exists()  # nothing recorded


def test_play_fields_are_required_on_a_play_and_refused_on_a_click(client, world):
    body = page(client, world)
    play = event(body, 1, "play")
    del play["skipped"]
    answer = post(client, world, [play, event(body, 1, listened_seconds=3.0)])
    assert answer.status_code == 400
    assert set(answer.json()["errors"]) == {"events[0].skipped", "events[1].listened_seconds"}


def test_play_event_rejects_impossible_seconds_in_python_too():
    with pytest.raises(ValueError, match="listened_seconds"):
        PlayEvent(uuid.uuid4(), uuid.uuid4(), 1, 1, float("nan"), False)


def test_a_batch_from_an_older_relay_lands_with_its_columns_as_a_prefix(world):
    rec = recommend(user_id="old-relay", seed_track_id=world.tracks[0].pk, k=3)
    events_record([ClickEvent(uuid.uuid4(), rec.request_id, rec.items[0].track_id, 1)], [])
    text, _ = outbox_copy_text(100)
    dropped = len(COPY_COLUMNS) - COPY_COLUMNS.index("listened_seconds")
    old = "".join("\t".join(line.split("\t")[:-dropped]) + "\n" for line in text.splitlines())
    result = ingest_copy_batch(old)
    assert (result.impressions, result.clicks) == (3, 1)
    assert Page.objects.filter(request_id=rec.request_id).exists() and Click.objects.count() == 1


def test_a_play_row_the_worker_cannot_land_is_quarantined_alone(world):
    rec = recommend(user_id="broken-player", seed_track_id=world.tracks[0].pk, k=3)
    EventOutbox.objects.create(kind=PLAY, event_id=uuid.uuid4(), request_id=rec.request_id, user_key=1,
                               track_id=rec.items[0].track_id, position=1, created_at=timezone.now())  # no seconds
    drain_outbox()
    assert Page.objects.filter(request_id=rec.request_id).exists() and not EventOutbox.objects.exists()
    assert "listened_seconds" in EventQuarantine.objects.get(kind=PLAY).error


# --- a hand-made scenario: every aggregate, the all-traffic rollup and the pre-period sums ---------------------

def _served(user: str, world, k: int, day, clicks: dict[int, float | None] = {}) -> uuid.UUID:  # noqa: B006
    """A page served now, its clicks (position -> seconds played, None: no play), all dated ``day`` at noon."""
    rec = recommend(user_id=user, seed_track_id=world.tracks[k].pk, k=k)
    track = {item_position: item.track_id for item_position, item in enumerate(rec.items, start=1)}
    result = events_record(
        [ClickEvent(uuid.uuid4(), rec.request_id, track[p], p) for p in clicks],
        [PlayEvent(uuid.uuid4(), rec.request_id, track[p], p, s, s < 30) for p, s in clicks.items() if s is not None])
    assert result.rejected == []
    noon = datetime.combine(day, time(12), tzinfo=UTC)
    EventOutbox.objects.filter(request_id=rec.request_id).update(created_at=noon)
    Page.objects.filter(request_id=rec.request_id).update(created_at=noon)
    return rec.request_id


def test_listening_sums_daily_rollups_and_pre_period_on_a_hand_made_scenario(db):
    world = build_world(n_tracks=40, start_experiment=False)
    d = timezone.now().date() - timedelta(days=2)  # the experiment's first day; it runs on d and d + 1
    # traffic outside any experiment (no experiment runs yet)
    _served("ann", world, 4, d - timedelta(days=20), {1: 100.0})  # before ann's 14-day window
    _served("ann", world, 5, d - timedelta(days=3), {2: 40.0, 3: 10.0})
    _served("ann", world, 3, d - timedelta(days=1))
    _served("bob", world, 2, d - timedelta(days=15))  # before bob's window (his first exposure is d + 1)
    _served("bob", world, 4, d - timedelta(days=1), {1: 30.0, 2: None})  # exactly 30 s: a long listen
    experiment = experiment_start(experiment=experiment_create(name="listening", variants=[
        VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk, 50)]))
    clear_serving_cache()
    _served("ann", world, 5, d, {1: 12.5})
    _served("ann", world, 5, d + timedelta(days=1), {2: 60.0})
    _served("bob", world, 4, d + timedelta(days=1), {3: 29.5, 4: None})

    assert drain_outbox(batch_size=10_000) == 8 + 9 + 7  # outbox rows (pages, clicks, plays): in one batch
    assert_aggregates_match_raw_events()
    traffic = {(row[0], row[1]): row[2:] for row in UserDailyTraffic.objects.values_list(
        "user_key", "day", *METRIC_SUMS)}
    ann, bob = user_key("ann"), user_key("bob")
    assert traffic == {
        (ann, d - timedelta(days=20)): (4, 1, 1, 1, 0, 100.0),
        (ann, d - timedelta(days=3)): (5, 2, 2, 1, 1, 50.0),
        (ann, d - timedelta(days=1)): (3, 0, 0, 0, 0, 0.0),
        (ann, d): (5, 1, 1, 0, 1, 12.5),
        (ann, d + timedelta(days=1)): (5, 1, 1, 1, 0, 60.0),
        (bob, d - timedelta(days=15)): (2, 0, 0, 0, 0, 0.0),
        (bob, d - timedelta(days=1)): (4, 2, 1, 1, 0, 30.0),
        (bob, d + timedelta(days=1)): (4, 2, 1, 0, 1, 29.5),
    }
    pre_fields = [f"pre_{name}" for name in METRIC_SUMS]
    users = {row[0]: (row[1:7], row[7:]) for row in UserAggregate.objects.filter(experiment=experiment)
             .values_list("user_key", *METRIC_SUMS, *pre_fields)}
    assert users == {ann: ((10, 2, 2, 1, 1, 72.5), (8, 2, 2, 1, 1, 50.0)),
                     bob: ((4, 2, 1, 0, 1, 29.5), (4, 2, 1, 1, 0, 30.0))}

    # what the analysis reads: one scan of UserAggregate, per arm
    arms = dict(UserAggregate.objects.filter(experiment=experiment).values_list("user_key", "variant_id"))
    rows = user_metric_rows(experiment.pk)
    assert set(rows) == set(arms.values())
    for user, (post, pre) in users.items():
        arm = rows[arms[user]]
        match = np.flatnonzero((arm.post == np.array(post, dtype=float)).all(axis=1))
        assert len(match) == 1 and arm.pre[match[0]].tolist() == list(pre) and arm.has_pre[match[0]]
    assert sum(r.users for r in rows.values()) == 2
    moments = daily_metric_moments(experiment.pk)
    last = {row[0]: dict(zip(DAILY_METRIC_FIELDS, row, strict=True)) for row in moments if row[1] == d + timedelta(1)}
    assert sum(m["sum_listened_seconds"] for m in last.values()) == 102.0
    assert sum(m["sum_plays_short_plays"] for m in last.values()) == 2 * 1 + 1 * 1
    assert sum(m["sum_clicks_listened_seconds"] for m in last.values()) == 2 * 72.5 + 2 * 29.5


def test_a_user_without_pre_period_traffic_has_zero_pre_sums_and_no_pre_flag(world):
    rec = recommend(user_id="newcomer", seed_track_id=world.tracks[0].pk, k=4)
    assert rec.experiment_id == world.experiment.pk
    drain_outbox()
    rows = user_metric_rows(world.experiment.pk)
    (arm,) = [r for r in rows.values() if r.users]
    assert arm.post.tolist() == [[4, 0, 0, 0, 0, 0.0]] and arm.pre.tolist() == [[0] * 6]
    assert not arm.has_pre.any()
    assert user_metric_rows(world.experiment.pk + 10_000) == {}
