"""Rate limits on the player API (abplatform/ratelimit.py): per key, per address, per address's wrong keys.

The limits are set low through the settings the middleware reads when a handler builds its chain
(the test client builds its own at its first request), and the requests are real: the Django
test client through the site's middleware chain, and the WSGI handler of the lean chain that
serves the two hot endpoints in production.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory, override_settings

from abplatform import ratelimit
from abplatform.apikeys.services import api_key_create
from abplatform.wsgi import PLAYER_API_MIDDLEWARE, PLAYER_API_PATHS, SubsetMiddlewareHandler
from tests.experiments.serving_fixtures import build_world

RECOMMEND = "/api/v1/recommendations"
EVENTS = "/api/v1/events"
MIDDLEWARE = "abplatform.ratelimit.RateLimitMiddleware"
LOW = 0.1  # tokens per second: nothing refills within a test, and Retry-After is ~10 s
OFF = {"RATE_LIMIT_KEY_PER_S": 0, "RATE_LIMIT_ADDR_PER_S": 0, "RATE_LIMIT_AUTH_FAIL_PER_S": 0}


@pytest.fixture
def world(db):
    return build_world()


def recommend(client, world, key: str | None = None, addr: str = "10.0.0.1"):
    headers = {"Authorization": f"Api-Key {key or world.key}"}
    return client.get(RECOMMEND, {"user": "u", "seed_track": world.tracks[0].pk, "k": 2}, headers=headers,
                      REMOTE_ADDR=addr)


def assert_limited(response, reason: str) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) >= 1
    assert reason in response.json()["detail"]


def test_the_limiter_is_in_both_middleware_chains_right_after_security_and_json_errors(settings):
    early = ["django.middleware.security.SecurityMiddleware", "abplatform.api_errors.ApiErrorMiddleware", MIDDLEWARE]
    assert settings.MIDDLEWARE[:3] == early
    assert list(PLAYER_API_MIDDLEWARE) == early
    assert {RECOMMEND, EVENTS} <= PLAYER_API_PATHS


def test_a_key_over_its_limit_gets_429_and_other_keys_do_not(client, world, settings):
    settings.RATE_LIMIT_KEY_PER_S, settings.RATE_LIMIT_KEY_BURST = LOW, 3
    settings.RATE_LIMIT_ADDR_PER_S = 0
    assert [recommend(client, world).status_code for _ in range(3)] == [200, 200, 200]
    over = recommend(client, world)
    assert_limited(over, "API key")
    assert 5 <= int(over["Retry-After"]) <= 11  # one token at 0.1/s
    assert_limited(recommend(client, world, addr="10.9.9.9"), "API key")  # the key's limit, from anywhere
    _, other_key = api_key_create(name="another app")
    assert recommend(client, world, key=other_key).status_code == 200  # same address, other key
    # events count against the same key
    assert_limited(client.post(EVENTS, {"events": []}, content_type="application/json",
                               headers=world.headers, REMOTE_ADDR="10.0.0.1"), "API key")


def test_an_address_over_its_limit_gets_429_on_both_hot_endpoints(client, world, settings):
    settings.RATE_LIMIT_KEY_PER_S = 0
    settings.RATE_LIMIT_ADDR_PER_S, settings.RATE_LIMIT_ADDR_BURST = LOW, 3
    body = recommend(client, world, addr="10.0.0.7").json()
    event = {"event_id": str(uuid.uuid4()), "type": "click", "request_id": body["request_id"],
             "track": body["items"][0]["track"], "position": 1}
    posted = client.post(EVENTS, {"events": [event]}, content_type="application/json", headers=world.headers,
                         REMOTE_ADDR="10.0.0.7")
    assert posted.status_code == 202
    assert recommend(client, world, addr="10.0.0.7").status_code == 200
    assert_limited(recommend(client, world, addr="10.0.0.7"), "client address")
    assert_limited(client.post(EVENTS, {"events": [event]}, content_type="application/json",
                               headers=world.headers, REMOTE_ADDR="10.0.0.7"), "client address")
    assert recommend(client, world, addr="10.0.0.8").status_code == 200  # same key, other address


def test_ipv6_clients_are_limited_by_their_64(client, world, settings):
    settings.RATE_LIMIT_KEY_PER_S = 0
    settings.RATE_LIMIT_ADDR_PER_S, settings.RATE_LIMIT_ADDR_BURST = LOW, 2
    assert recommend(client, world, addr="2001:db8:1:2::1").status_code == 200
    assert recommend(client, world, addr="2001:db8:1:2::ffff").status_code == 200
    assert_limited(recommend(client, world, addr="2001:db8:1:2:aaaa::9"), "client address")  # same /64
    assert recommend(client, world, addr="2001:db8:1:3::1").status_code == 200  # next /64


def test_wrong_keys_spend_the_addresses_failure_budget(client, world, settings):
    """The tester's 50 wrong keys in a burst: the first few are told 401, the rest 429, and the address then
    waits, even with a good key; other addresses keep their own budget."""
    settings.RATE_LIMIT_AUTH_FAIL_PER_S, settings.RATE_LIMIT_AUTH_FAIL_BURST = LOW, 5
    answers = [recommend(client, world, key=f"{uuid.uuid4().hex[:8]}.{uuid.uuid4().hex}", addr="10.0.0.66")
               for _ in range(50)]
    codes = [r.status_code for r in answers]
    assert codes == [401] * 5 + [429] * 45
    assert_limited(answers[-1], "missing or wrong API key")
    assert_limited(recommend(client, world, addr="10.0.0.66"), "missing or wrong API key")
    assert recommend(client, world, addr="10.0.0.67").status_code == 200
    assert recommend(client, world, key="nope.nope", addr="10.0.0.67").status_code == 401
    # the DRF endpoints count too: a keyless events POST is a 401 that spends the same budget
    for _ in range(4):
        assert client.post(EVENTS, "{}", content_type="application/json", REMOTE_ADDR="10.0.0.67").status_code == 401
    assert_limited(client.post(EVENTS, "{}", content_type="application/json", REMOTE_ADDR="10.0.0.67"),
                   "missing or wrong API key")


def test_zero_disables_and_other_paths_are_never_limited(client, world, settings):
    for name, value in OFF.items():
        setattr(settings, name, value)
    assert {recommend(client, world).status_code for _ in range(30)} == {200}
    ratelimit.reset()
    settings.RATE_LIMIT_ADDR_PER_S, settings.RATE_LIMIT_ADDR_BURST = LOW, 1
    other = client.__class__()  # a new handler reads the new settings
    assert other.get("/healthz", REMOTE_ADDR="10.0.0.5").status_code != 429
    assert {other.get("/admin/login/", REMOTE_ADDR="10.0.0.5").status_code for _ in range(3)} == {200}


def _call(handler, path: str, addr: str) -> tuple[int, dict[str, str], bytes]:
    environ = RequestFactory().get(path, {"user": "u", "seed_track": 1}, REMOTE_ADDR=addr).environ
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(handler(environ, start_response))
    return answer["status"], answer["headers"], body


@override_settings(RATE_LIMIT_KEY_PER_S=0, RATE_LIMIT_AUTH_FAIL_PER_S=0, RATE_LIMIT_ADDR_PER_S=LOW,
                   RATE_LIMIT_ADDR_BURST=2)
def test_the_lean_player_api_chain_limits_too():
    """What gunicorn runs for /api/v1/recommendations: abplatform.wsgi's handler with PLAYER_API_MIDDLEWARE.

    Keyless requests (401 without touching the database) spend the address's budget; the third is refused.
    """
    handler = SubsetMiddlewareHandler(PLAYER_API_MIDDLEWARE)
    # as django.test.Client does: no connection closing around these in-process requests
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        first = [_call(handler, RECOMMEND, "10.1.1.1")[0] for _ in range(2)]
        status, headers, body = _call(handler, RECOMMEND, "10.1.1.1")
        elsewhere = _call(handler, RECOMMEND, "10.1.1.2")[0]
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert first == [401, 401]
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert "client address" in json.loads(body)["detail"]
    assert headers.get("X-Content-Type-Options") == "nosniff"  # SecurityMiddleware still wraps the answer
    assert elsewhere == 401
