"""GET /api/v1/tracks over real HTTP: pagination, fields, authentication."""

import httpx
import pytest

from abplatform.apikeys.services import api_key_create
from tests.recommender.embeddings_fixtures import staff_http_client, synthetic_tracks

pytestmark = pytest.mark.django_db(transaction=True)


def test_tracks_are_paginated_with_labels(live_server):
    tracks = synthetic_tracks(25)
    with staff_http_client(live_server.url) as client:
        first = client.get("/api/v1/tracks", params={"page_size": 10})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["count"] == 25 and len(body["results"]) == 10
        assert body["results"][0] == {
            "id": tracks[0].pk, "title": "t0", "artist": "composer 0", "album": "album 0", "duration_s": 20.0,
            "labels": {"style": "style0", "ensemble": "ens0"},
        }
        last = client.get("/api/v1/tracks", params={"page": 3, "page_size": 10}).json()
        assert [row["id"] for row in last["results"]] == [t.pk for t in tracks[20:]]
        assert last["next"] is None
        seen = [row["id"] for page in (1, 2, 3) for row in
                client.get("/api/v1/tracks", params={"page": page, "page_size": 10}).json()["results"]]
        assert seen == [t.pk for t in tracks]


def test_page_out_of_range_is_404_with_reason(live_server):
    synthetic_tracks(3)
    with staff_http_client(live_server.url) as client:
        response = client.get("/api/v1/tracks", params={"page": 9})
    assert response.status_code == 404
    assert "invalid page" in response.json()["detail"].lower()


def test_players_authenticate_with_an_api_key(live_server):
    synthetic_tracks(4)
    _, key = api_key_create(name="player-app")
    ok = httpx.get(f"{live_server.url}/api/v1/tracks", headers={"Authorization": f"Api-Key {key}"})
    assert ok.status_code == 200 and ok.json()["count"] == 4
    wrong = httpx.get(f"{live_server.url}/api/v1/tracks", headers={"Authorization": f"Api-Key {key}x"})
    assert wrong.status_code == 401 and "unknown or inactive API key" in wrong.json()["detail"]
    anonymous = httpx.get(f"{live_server.url}/api/v1/tracks")
    assert anonymous.status_code == 401 and "credentials" in anonymous.json()["detail"]
