"""GET /api/v1/recommendations and POST /api/v1/events: results, recording, auth and validation."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from abplatform.apikeys.models import ApiKey
from experiments.assignment import ArmSpec, assign_variant, user_key
from experiments.events.ids import click_event_id, impression_event_id, new_request_id
from experiments.events.ingest import drain_outbox
from experiments.models import (
    Assignment,
    EventOutbox,
    Impression,
    Page,
    PositionRollup,
    UserAggregate,
    UserDailyTraffic,
)
from experiments.selectors import serving_config
from experiments.services import experiment_pause
from tests.experiments.serving_fixtures import build_world, exact_neighbours

URL = "/api/v1/recommendations"
EVENTS = "/api/v1/events"


@pytest.fixture
def world(db):
    return build_world()


def get(client, world, **params):
    return client.get(URL, params, headers=world.headers)


def post_events(client, world, events, **kwargs):
    return client.post(EVENTS, {"events": events}, content_type="application/json", headers=world.headers, **kwargs)


def click(body, position: int, event_id: str | None = None, track: int | None = None) -> dict:
    return {"event_id": event_id or str(uuid.uuid4()), "type": "click", "request_id": body["request_id"],
            "track": track if track is not None else body["items"][position - 1]["track"], "position": position,
            "client_time": "2026-11-25T10:00:00Z"}


def test_recommendations_are_the_exact_neighbours_of_the_users_arm(client, world):
    seed, excluded = world.tracks[3].pk, (world.tracks[10].pk, world.tracks[11].pk)
    response = get(client, world, user="alice", seed_track=seed, k=8, exclude=",".join(map(str, excluded)))
    assert response.status_code == 200, response.content
    body = response.json()
    expected_variant = assign_variant(world.experiment.salt, "alice",
                                      [ArmSpec("control", 50, True), ArmSpec("treatment", 50)]).variant_key
    assert body["variant"] == expected_variant
    assert body["experiment"] == world.experiment.pk
    model = world.baseline if expected_variant == "control" else world.treatment
    assert body["model_id"] == model.pk
    tracks = [item["track"] for item in body["items"]]
    assert tracks == exact_neighbours(world, model, seed, 8, excluded)
    assert [item["position"] for item in body["items"]] == list(range(1, 9))
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert seed not in tracks and not set(excluded) & set(tracks)
    assert body["items"][0]["title"].startswith("tune ")


def test_the_page_is_stored_at_serving_and_one_row_goes_to_the_outbox(client, world):
    body = get(client, world, user="bob", seed_track=world.tracks[0].pk, k=6).json()
    page = Page.objects.get(request_id=body["request_id"])  # stored before the answer went out
    assert page.track_ids == [i["track"] for i in body["items"]]
    assert [round(s, 6) for s in page.scores] == [i["score"] for i in body["items"]]
    assert (page.user_key, page.experiment_id) == (user_key("bob"), world.experiment.pk)
    rows = list(EventOutbox.objects.filter(request_id=body["request_id"]))
    assert len(rows) == 1  # one narrow row that hands the page to the worker's aggregates
    row = rows[0]
    assert row.kind == EventOutbox.Kind.RECOMMENDATION and row.event_id == uuid.UUID(body["request_id"])
    assert (row.user_key, row.user_id, row.experiment_id) == (user_key("bob"), "bob", world.experiment.pk)

    drain_outbox()
    impressions = list(Impression.objects.filter(request_id=body["request_id"]).order_by("position"))
    assert [i.position for i in impressions] == [1, 2, 3, 4, 5, 6]
    assert [i.track_id for i in impressions] == [i["track"] for i in body["items"]]
    assert {i.user_key for i in impressions} == {user_key("bob")}
    assert {i.experiment_id for i in impressions} == {world.experiment.pk}
    assert [i.event_id for i in impressions] == [impression_event_id(row.request_id, p) for p in range(1, 7)]
    assert not EventOutbox.objects.filter(request_id=body["request_id"]).exists()


@pytest.mark.parametrize("request_id", [new_request_id(), uuid.uuid4()], ids=["version 7", "legacy version 4"])
def test_impression_ids_agree_between_python_and_sql(db, request_id):
    from django.db import connection

    from experiments.events.ids import impression_event_id_sql

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {impression_event_id_sql('q.r', 'p')} FROM (SELECT %s::uuid AS r) AS q, "
                       "generate_series(1, 12) AS p", [str(request_id)])
        from_sql = [row[0] for row in cursor.fetchall()]
    assert from_sql == [impression_event_id(request_id, p) for p in range(1, 13)]
    assert len(set(from_sql)) == 12


def test_request_and_impression_ids_grow_with_time():
    import time

    earlier = new_request_id()
    time.sleep(0.002)
    later = new_request_id()
    assert earlier.version == later.version == 7 and earlier.variant == uuid.RFC_4122
    assert earlier < later and impression_event_id(earlier, 99) < impression_event_id(later, 1)
    assert impression_event_id(later, 3).hex[:16] == later.hex[:16]  # the timestamp half leads
    legacy = uuid.uuid4()
    assert impression_event_id(legacy, 3).hex[:16] != legacy.hex[:16]


def test_clicks_on_a_request_served_with_a_legacy_id_still_match(client, world, monkeypatch):
    """Requests answered before ids became time-ordered (version 4) keep their MD5 impression ids."""
    import experiments.serving as services_events

    monkeypatch.setattr(services_events, "new_request_id", uuid.uuid4)
    body = get(client, world, user="gil", seed_track=world.tracks[0].pk, k=4).json()
    assert uuid.UUID(body["request_id"]).version == 4
    before = post_events(client, world, [click(body, 2)]).json()  # still a recommendation row in the outbox
    drain_outbox()
    after = post_events(client, world, [click(body, 3)]).json()  # expanded into impressions by then
    assert (before["accepted"], before["rejected"]) == (1, [])
    assert (after["accepted"], after["rejected"]) == (1, [])


def test_titles_come_from_a_cache_that_a_lifecycle_change_refreshes(client, world):
    from experiments.selectors import clear_serving_cache

    first = get(client, world, user="carol", seed_track=world.tracks[0].pk, k=3).json()["items"][0]
    Track = type(world.tracks[0])
    Track.objects.filter(pk=first["track"]).update(title="renamed")
    again = get(client, world, user="carol", seed_track=world.tracks[0].pk, k=3).json()["items"][0]
    assert again["track"] == first["track"] and again["title"] == first["title"]  # cached
    clear_serving_cache()  # what experiment start/pause/stop do on commit
    fresh = get(client, world, user="carol", seed_track=world.tracks[0].pk, k=3).json()["items"][0]
    assert fresh["title"] == "renamed"


@pytest.mark.django_db(transaction=True)
def test_title_cache_refills_in_the_background_and_keeps_serving_meanwhile():
    import time

    from recommender.models import Track
    from recommender.vector_search import TrackTitles

    track = Track.objects.create(title="old", artist="a", album="x", duration_s=1.0, sample_rate=16000,
                                 checksum=uuid.uuid4().hex, audio_path="none")
    titles = TrackTitles(ttl_s=0.2)
    assert titles.get([track.pk]) == {track.pk: ("old", "a")}  # first fill: inline
    Track.objects.filter(pk=track.pk).update(title="new")
    time.sleep(0.3)  # expired
    assert titles.get([track.pk]) == {track.pk: ("old", "a")}  # served from the old cache at once
    deadline = time.monotonic() + 10
    while titles.get([track.pk])[track.pk][0] != "new" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert titles.get([track.pk]) == {track.pk: ("new", "a")}


def test_assignment_is_sticky_and_uses_both_arms(client, world):
    first = {f"user{i}": get(client, world, user=f"user{i}", seed_track=world.tracks[0].pk, k=2).json()["variant"]
             for i in range(60)}
    again = {u: get(client, world, user=u, seed_track=world.tracks[5].pk, k=2).json()["variant"] for u in first}
    assert first == again
    counts = Counter(first.values())
    assert set(counts) == {"control", "treatment"}


def assert_recorded_outside_any_experiment(count: int) -> None:
    """``count`` pages in the outbox without experiment or variant (all traffic is recorded: CUPED's pre-period)."""
    rows = list(EventOutbox.objects.values_list("kind", "experiment_id", "variant_id"))
    assert rows == [(EventOutbox.Kind.RECOMMENDATION, None, None)] * count


def test_no_running_experiment_serves_the_baseline_and_records_the_page_outside_any_experiment(client, db):
    world = build_world(start_experiment=False)
    body = get(client, world, user="carol", seed_track=world.tracks[0].pk, k=5).json()
    assert body["experiment"] is None and body["variant"] is None
    assert body["model_id"] == world.baseline.pk
    assert len(body["items"]) == 5
    assert_recorded_outside_any_experiment(1)
    drain_outbox()
    assert not UserAggregate.objects.exists() and not Assignment.objects.exists()  # in no analysis
    traffic = UserDailyTraffic.objects.get(user_key=user_key("carol"))
    assert (traffic.impressions, traffic.clicks) == (5, 0)


def test_paused_experiment_falls_back_to_the_baseline(client, world):
    experiment_pause(experiment=world.experiment)
    body = get(client, world, user="dave", seed_track=world.tracks[0].pk).json()
    assert body["experiment"] is None and body["model_id"] == world.baseline.pk
    assert_recorded_outside_any_experiment(1)


def test_users_outside_the_experiments_buckets_get_the_default_outside_the_analysis(client, db):
    world = build_world(traffic_fraction=0.01)
    placement = serving_config().placements["track_page"]
    outside = [f"out{i}" for i in range(400) if placement.assign(f"out{i}").experiment is None][:20]
    assert len(outside) == 20
    for user in outside:
        body = get(client, world, user=user, seed_track=world.tracks[0].pk, k=3).json()
        assert body["experiment"] is None and body["variant"] is None
        assert body["model_id"] == world.baseline.pk  # the placement's default (here: the active baseline arm)
    assert_recorded_outside_any_experiment(20)


def test_unindexed_seed_is_a_404_with_a_reason(client, world):
    response = get(client, world, user="erin", seed_track=999_999_999)
    assert response.status_code == 404
    assert "999999999" in response.json()["detail"]


@pytest.mark.parametrize("params, field", [
    ({}, "user"),
    ({"seed_track": 1}, "user"),
    ({"user": "u"}, "seed_track"),
    ({"user": "", "seed_track": 1}, "user"),
    ({"user": "   ", "seed_track": 1}, "user"),
    ({"user": "x" * 201, "seed_track": 1}, "user"),
    ({"user": "a\x00b", "seed_track": 1}, "user"),
    ({"user": "u", "seed_track": "abc"}, "seed_track"),
    ({"user": "u", "seed_track": "-4"}, "seed_track"),
    ({"user": "u", "seed_track": "0"}, "seed_track"),
    ({"user": "u", "seed_track": "1.5"}, "seed_track"),
    ({"user": "u", "seed_track": "99999999999999999999999"}, "seed_track"),
    ({"user": "u", "seed_track": "1", "k": "0"}, "k"),
    ({"user": "u", "seed_track": "1", "k": "101"}, "k"),
    ({"user": "u", "seed_track": "1", "k": "ten"}, "k"),
    ({"user": "u", "seed_track": "1", "exclude": "a,b"}, "exclude"),
    ({"user": "u", "seed_track": "1", "exclude": "1;2"}, "exclude"),
    ({"user": "u", "seed_track": "1", "exclude": "-1"}, "exclude"),
    ({"user": "u", "seed_track": "1", "exclude": "99999999999999999999"}, "exclude"),
    ({"user": "u", "seed_track": "1", "exclude": ",".join(["1"] * 501)}, "exclude"),
])
def test_malformed_queries_are_400_with_a_reason(client, world, params, field):
    response = get(client, world, **params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"] and body["detail"].startswith("invalid request")


def test_authentication(client, world):
    params = {"user": "u", "seed_track": world.tracks[0].pk}
    missing = client.get(URL, params)
    assert missing.status_code == 401 and "Api-Key" in missing.headers["WWW-Authenticate"]
    wrong = client.get(URL, params, headers={"Authorization": "Api-Key " + world.key[:-3] + "xyz"})
    assert wrong.status_code == 401
    unknown_prefix = client.get(URL, params, headers={"Authorization": "Api-Key nope.nope"})
    assert unknown_prefix.status_code == 401
    no_dot = client.get(URL, params, headers={"Authorization": "Api-Key garbage"})
    assert no_dot.status_code == 401
    other_scheme = client.get(URL, params, headers={"Authorization": "Bearer " + world.key})
    assert other_scheme.status_code == 401
    assert client.get(URL, params, headers=world.headers).status_code == 200
    ApiKey.objects.update(active=False)
    from abplatform.apikeys.authentication import clear_api_key_cache

    clear_api_key_cache()
    assert client.get(URL, params, headers=world.headers).status_code == 401


def test_staff_session_is_not_a_player(client, world, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x" * 12, is_staff=True)
    client.force_login(staff)
    assert client.get(URL, {"user": "u", "seed_track": world.tracks[0].pk}).status_code in (401, 403)


def test_keys_are_stored_hashed(world):
    row = ApiKey.objects.get()
    assert world.key not in (row.key_hash, row.prefix)
    assert world.key.startswith(row.prefix + ".")
    assert len(row.key_hash) == 64


# --- events ------------------------------------------------------------------------------

def test_clicks_are_validated_against_the_impressions_shown(client, world):
    body = get(client, world, user="fay", seed_track=world.tracks[0].pk, k=5).json()
    good = click(body, 2)
    other_track = body["items"][3]["track"]
    events = [
        good,
        {**click(body, 1), "request_id": str(uuid.uuid4())},  # unknown request
        {**click(body, 5), "position": 7, "track": body["items"][4]["track"]},  # position not shown (k=5)
        click(body, 1, track=other_track),  # wrong track at that position
    ]
    response = post_events(client, world, events)
    assert response.status_code == 202, response.content
    result = response.json()
    assert result["accepted"] == 1 and result["duplicates"] == 0
    reasons = {r["event_id"]: r["reason"] for r in result["rejected"]}
    assert set(reasons) == {events[1]["event_id"], events[2]["event_id"], events[3]["event_id"]}
    assert "no page recorded" in reasons[events[1]["event_id"]]
    assert "position" in reasons[events[2]["event_id"]]
    assert "track" in reasons[events[3]["event_id"]]
    stored = EventOutbox.objects.filter(kind=EventOutbox.Kind.CLICK)
    # stored under the impression's click id (one counted click per impression), not the client's id
    assert [e.event_id for e in stored] == [click_event_id(uuid.UUID(body["request_id"]), 2)]
    assert stored[0].variant_id == EventOutbox.objects.get(request_id=body["request_id"], kind=3).variant_id


def test_repeated_event_ids_are_accepted_and_counted_once(client, world):
    body = get(client, world, user="gus", seed_track=world.tracks[0].pk, k=3).json()
    event = click(body, 1)
    first = post_events(client, world, [event, event]).json()
    assert first == {"accepted": 1, "duplicates": 1, "rejected": []}
    again = post_events(client, world, [event]).json()
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert EventOutbox.objects.filter(kind=EventOutbox.Kind.CLICK).count() == 1


def test_clicks_outside_any_experiment_count_in_the_users_traffic_only(client, db):
    world = build_world(start_experiment=False)
    body = get(client, world, user="hal", seed_track=world.tracks[0].pk, k=3).json()
    result = post_events(client, world, [click(body, 1)]).json()
    assert result == {"accepted": 1, "duplicates": 0, "rejected": []}
    drain_outbox()
    traffic = UserDailyTraffic.objects.get(user_key=user_key("hal"))
    assert (traffic.impressions, traffic.clicks) == (3, 1)
    assert not UserAggregate.objects.exists() and not PositionRollup.objects.exists()


VALID_ID = "0b9f8d6c-3a52-4f0e-9a59-0f3bfe7a1c11"


def one_event(**override) -> str:
    event = {"event_id": VALID_ID, "type": "click", "request_id": VALID_ID, "track": 1, "position": 1, **override}
    return json.dumps({"events": [event]})


@pytest.mark.parametrize("payload", [
    "not json",
    "[]",
    "{}",
    '{"events": []}',
    '{"events": {}}',
    '{"events": "click"}',
    '{"events": [1, 2]}',
    '{"events": [null]}',
    '{"events": [{}]}',
    one_event(event_id="nope"),
    one_event(type="view"),
    one_event(track="x"),
    one_event(track=-1),
    one_event(position=0),
    one_event(position=1000),
    one_event(client_time="yesterday"),
    one_event(request_id="\u0000"),
    one_event(request_id=None),
    one_event(track=2**70),
    one_event().replace('"track": 1', '"track": 1e400'),
    json.dumps({"events": [json.loads(one_event())["events"][0]] * 1001}),
])
def test_malformed_event_batches_are_400_with_a_reason(client, world, payload):
    response = client.post(EVENTS, payload, content_type="application/json", headers=world.headers)
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert EventOutbox.objects.filter(kind=EventOutbox.Kind.CLICK).count() == 0


def test_event_transport_errors_are_4xx(client, world):
    assert client.post(EVENTS, "a=b", content_type="application/x-www-form-urlencoded",
                       headers=world.headers).status_code in (400, 415)
    assert client.post(EVENTS, "<xml/>", content_type="application/xml", headers=world.headers).status_code == 415
    assert client.get(EVENTS, headers=world.headers).status_code == 405
    assert client.post(URL, {}, headers=world.headers).status_code == 405
    assert client.post(EVENTS, "{}", content_type="application/json").status_code == 401


def test_openapi_schema_documents_the_serving_api(client, db):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/recommendations" in paths and "/api/v1/events" in paths
    params = {p["name"] for p in paths["/api/v1/recommendations"]["get"]["parameters"]}
    assert {"user", "seed_track", "k", "exclude"} <= params
