"""The served OpenAPI schema states the API's real limits and every status code, JSON bodies only.

Fuzzing (test_api_fuzz.py) proves the server never answers outside the schema; it cannot notice
a limit the schema leaves out (a missing ``maximum`` only widens what is generated). These
assertions pin the limits to the constants the validation uses, so the two cannot drift apart.
"""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from experiments.api.serializers import MAX_EVENTS, MAX_EXCLUDE, MAX_INT, MAX_K, MAX_USER_LEN
from recommender.serializers import MAX_QUERY_CHARS, MAX_SEARCH_K
from tests.experiments.serving_fixtures import build_world


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _params(schema: dict, path: str, method: str = "get") -> dict[str, dict]:
    return {p["name"]: p for p in schema["paths"][path][method]["parameters"] if p["in"] in ("query", "path")}


def _resolve(schema: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_query_parameters_state_their_limits(schema):
    rec = _params(schema, "/api/v1/recommendations")
    assert rec["user"]["required"] and rec["seed_track"]["required"]
    assert (rec["user"]["schema"]["minLength"], rec["user"]["schema"]["maxLength"]) == (1, MAX_USER_LEN)
    assert (rec["seed_track"]["schema"]["minimum"], rec["seed_track"]["schema"]["maximum"]) == (1, MAX_INT)
    assert (rec["k"]["schema"]["minimum"], rec["k"]["schema"]["maximum"], rec["k"]["schema"]["default"]) == \
        (1, MAX_K, 10)
    exclude = rec["exclude"]
    assert exclude["schema"]["type"] == "array" and exclude["schema"]["maxItems"] == MAX_EXCLUDE
    assert (exclude["style"], exclude["explode"]) == ("form", False)  # exclude=1,2,3
    search = _params(schema, "/api/v1/search")
    assert (search["q"]["schema"]["minLength"], search["q"]["schema"]["maxLength"]) == (1, MAX_QUERY_CHARS)
    assert (search["k"]["schema"]["minimum"], search["k"]["schema"]["maximum"]) == (1, MAX_SEARCH_K)
    tracks = _params(schema, "/api/v1/tracks")
    assert tracks["page"]["schema"]["minimum"] == 1 and tracks["page_size"]["schema"]["maximum"] == 1000
    results = _params(schema, "/api/v1/experiments/{id}/results")
    assert results["id"]["schema"]["type"] == "integer" and results["id"]["schema"]["minimum"] == 1


def test_the_events_body_is_json_only_with_its_batch_limits(schema):
    body = schema["paths"]["/api/v1/events"]["post"]["requestBody"]
    assert list(body["content"]) == ["application/json"] and body["required"]
    events = _resolve(schema, body["content"]["application/json"]["schema"])["properties"]["events"]
    assert (events["minItems"], events["maxItems"]) == (1, MAX_EVENTS)
    click = _resolve(schema, events["items"])["properties"]
    assert (click["position"]["minimum"], click["position"]["maximum"]) == (1, MAX_K)


@pytest.mark.parametrize(("path", "method", "codes"), [
    ("/api/v1/recommendations", "get", {"200", "400", "401", "404", "414", "429", "500", "503"}),
    ("/api/v1/events", "post", {"202", "400", "401", "413", "415", "429", "500", "503"}),
    ("/api/v1/tracks", "get", {"200", "401", "403", "404", "429", "500", "503"}),
    ("/api/v1/search", "get", {"200", "400", "401", "403", "409", "414", "429", "500", "503"}),
    ("/api/v1/experiments/{id}/results", "get", {"200", "400", "401", "403", "404", "429", "500", "503"}),
])
def test_every_status_code_is_documented_with_its_json_shape_and_headers(schema, path, method, codes):
    responses = schema["paths"][path][method]["responses"]
    assert set(responses) == codes
    for code, response in responses.items():
        if code == "414":  # gunicorn's own answer, before the API: no JSON promised
            assert "content" not in response
            continue
        assert list(response["content"]) == ["application/json"], (code, response)
        if code.startswith(("4", "5")):
            error = _resolve(schema, response["content"]["application/json"]["schema"])
            assert error["properties"]["detail"]["type"] == "string" and "detail" in error["required"]
    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "Retry-After" in responses["503"]["headers"]
    if "429" in responses:
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
    assert "413" not in responses or str(settings.API_MAX_BODY_BYTES) in responses["413"]["description"]


@pytest.mark.django_db(transaction=True)
def test_an_invalid_event_is_named_by_its_index_in_one_string(client):
    """The schema promises ``errors`` as one string per field (``events[1].position``), whichever DRF list type
    validates the batch."""
    world = build_world(n_tracks=5)
    event = {"event_id": str(uuid.uuid4()), "type": "click", "request_id": str(uuid.uuid4()), "track": 1,
             "position": 1}
    answer = client.post("/api/v1/events", {"events": [event, {**event, "position": MAX_K + 1}]},
                         content_type="application/json", headers=world.headers)
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert list(errors) == ["events[1].position"] and isinstance(errors["events[1].position"], str), errors
    empty = client.post("/api/v1/events", {"events": []}, content_type="application/json", headers=world.headers)
    too_many = client.post("/api/v1/events", {"events": [event] * (MAX_EVENTS + 1)},
                           content_type="application/json", headers=world.headers)
    assert (empty.status_code, list(empty.json()["errors"])) == (400, ["events"])
    assert (too_many.status_code, list(too_many.json()["errors"])) == (400, ["events"])
