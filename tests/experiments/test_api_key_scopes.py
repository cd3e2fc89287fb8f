"""API key scopes (player / analyst), their command and admin, and how fast a revoked key stops working."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from abplatform.apikeys.authentication import CACHE_TTL_S, clear_api_key_cache, verify_api_key
from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import api_key_create
from tests.experiments.serving_fixtures import build_world

RECOMMEND = "/api/v1/recommendations"
EVENTS = "/api/v1/events"


@pytest.fixture
def world(db):
    return build_world()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


def results_url(world) -> str:
    return f"/api/v1/experiments/{world.experiment.pk}/results"


@pytest.mark.parametrize("scope", ["player", "analyst"])
def test_both_scopes_reach_the_player_api(client, world, scope):
    _, key = api_key_create(name=f"{scope} app", scope=scope)
    body = client.get(RECOMMEND, {"user": "u1", "seed_track": world.tracks[0].pk, "k": 3}, headers=auth(key))
    assert body.status_code == 200, body.content
    click = {"event_id": str(uuid.uuid4()), "type": "click", "request_id": body.json()["request_id"],
             "track": body.json()["items"][0]["track"], "position": 1}
    events = client.post(EVENTS, {"events": [click]}, content_type="application/json", headers=auth(key))
    assert events.status_code == 202 and events.json()["accepted"] == 1
    tracks = client.get("/api/v1/tracks", headers=auth(key))
    assert tracks.status_code == 200 and tracks.json()["count"] == len(world.tracks)


def test_search_takes_a_player_key(client, db):
    """No text model here: the answer is the 503 behind authentication, not a 401/403 in front of it."""
    _, key = api_key_create(name="player app")
    response = client.get("/api/v1/search", {"q": "calm piano"}, headers=auth(key))
    assert response.status_code == 503 and "no model is active" in response.json()["detail"]
    assert client.get("/api/v1/search", {"q": "calm piano"}).status_code == 401


def test_results_need_an_analyst_key_or_staff(client, world, django_user_model):
    _, player = api_key_create(name="player app")
    _, analyst = api_key_create(name="analyst", scope=ApiKey.Scope.ANALYST)
    refused = client.get(results_url(world), headers=auth(player))
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/json"
    assert "'analyst' scope" in refused.json()["detail"] and "variants" not in refused.json()
    allowed = client.get(results_url(world), headers=auth(analyst))
    assert allowed.status_code == 200 and [v["key"] for v in allowed.json()["variants"]] == ["control", "treatment"]
    assert client.get(results_url(world), headers=auth(player[:-2] + "xx")).status_code == 401
    client.force_login(django_user_model.objects.create_user("boss", password="x" * 12, is_staff=True))
    assert client.get(results_url(world)).status_code == 200


def test_create_api_key_command_sets_the_scope(db):
    out = io.StringIO()
    call_command("create_api_key", "reporting", "--scope", "analyst", stdout=out, stderr=io.StringIO())
    analyst = verify_api_key(out.getvalue().strip())
    assert analyst is not None and analyst.scope == "analyst"
    out = io.StringIO()
    call_command("create_api_key", "app", stdout=out, stderr=io.StringIO())
    assert verify_api_key(out.getvalue().strip()).scope == "player"  # the default
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", "--scope", "admin", stdout=io.StringIO(), stderr=io.StringIO())
    assert set(ApiKey.objects.values_list("name", "scope")) == {("reporting", "analyst"), ("app", "player")}


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("boss", password="x" * 12, is_staff=True,
                                                             is_superuser=True))
    return client


def test_admin_creates_a_key_with_its_scope_and_keeps_it_fixed(staff_client):
    form = staff_client.get("/admin/apikeys/apikey/add/").content.decode()
    assert 'name="scope"' in form
    response = staff_client.post("/admin/apikeys/apikey/add/", {"name": "reports", "scope": "analyst"},
                                 follow=True)
    shown = [str(m) for m in response.context["messages"]]
    key = next(m.split(": ")[-1] for m in shown if "shown once" in m)
    row = ApiKey.objects.get(name="reports")
    assert row.scope == "analyst" and verify_api_key(key).scope == "analyst"
    change = staff_client.get(f"/admin/apikeys/apikey/{row.pk}/change/").content.decode()
    assert "analyst" in change.lower() and 'name="scope"' not in change  # shown, read-only
    staff_client.post(f"/admin/apikeys/apikey/{row.pk}/change/", {"name": "reports", "scope": "player",
                                                                        "active": "on"})
    row.refresh_from_db()
    assert row.scope == "analyst"
    listing = staff_client.get("/admin/apikeys/apikey/").content.decode()
    assert "analyst" in listing.lower()


def test_a_key_deactivated_elsewhere_is_refused_within_a_second(client, world):
    """Another process's admin deactivates the key: this process's cache must not keep it alive for long."""
    params = {"user": "u", "seed_track": world.tracks[0].pk, "k": 2}
    assert CACHE_TTL_S <= 1.0
    assert client.get(RECOMMEND, params, headers=world.headers).status_code == 200  # verified and cached here
    ApiKey.objects.update(active=False)  # no cache clearing: what a write from another process looks like
    deactivated = time.monotonic()
    while client.get(RECOMMEND, params, headers=world.headers).status_code == 200:
        assert time.monotonic() - deactivated < 1.5, "a deactivated key still served after 1.5 s"
        time.sleep(0.05)
    assert time.monotonic() - deactivated <= 1.5
    assert client.post(EVENTS, {"events": []}, content_type="application/json",
                       headers=world.headers).status_code == 401


def test_admin_deactivation_is_immediate_here_and_says_how_fast_elsewhere(staff_client, world):
    clear_api_key_cache()
    params = {"user": "u", "seed_track": world.tracks[0].pk, "k": 2}
    assert staff_client.get(RECOMMEND, params, headers=world.headers).status_code == 200  # cached
    row = ApiKey.objects.get()
    response = staff_client.post("/admin/apikeys/apikey/", {"action": "deactivate_keys",
                                                                "_selected_action": [row.pk]}, follow=True)
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "1 key(s) deactivated" in shown and "within 1 s" in shown and "30 s" not in shown
    assert staff_client.get(RECOMMEND, params, headers=world.headers).status_code == 401  # no wait in this process
