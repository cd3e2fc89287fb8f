"""GET /api/v1/search over real HTTP: bad input and missing models answer 4xx/5xx with a reason."""

import httpx
import numpy as np
import pytest

from abplatform.apikeys.services import api_key_create
from recommender.services.embedding_training import crossmusim_train
from recommender.services.embeddings import (
    catalog_index,
    embedding_model_activate,
    embedding_model_register,
    track_embeddings_write,
)
from tests.recommender.embeddings_fixtures import (  # noqa: F401 - fixture
    described_catalog,
    one_torch_thread,
    staff_http_client,
    synthetic_tracks,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("one_torch_thread")]


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 501}, "q"), ({"q": "reel", "k": "0"}, "k"),
     ({"q": "reel", "k": "101"}, "k"), ({"q": "reel", "k": "ten"}, "k")],
)
def test_bad_query_parameters_are_400_with_a_reason(live_server, params, field):
    with staff_http_client(live_server.url) as client:
        response = client.get("/api/v1/search", params=params)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and body["detail"].startswith(f"{field}:")


def test_no_active_model_is_503_with_a_reason(live_server):
    with staff_http_client(live_server.url) as client:
        response = client.get("/api/v1/search", params={"q": "a lively reel"})
    assert response.status_code == 503
    assert "no model is active" in response.json()["detail"]


def test_a_baseline_model_on_the_arm_is_409(live_server):
    tracks = synthetic_tracks(5)
    model = embedding_model_register(name="audio-only", kind="baseline", dim=4)
    track_embeddings_write(model=model, track_ids=[t.pk for t in tracks], vectors=np.eye(5, 4) + 0.1)
    embedding_model_activate(model=model, arm="crossmusim")
    with staff_http_client(live_server.url) as client:
        response = client.get("/api/v1/search", params={"q": "a lively reel"})
    assert response.status_code == 409
    assert "only a cross-modal model can search" in response.json()["detail"]


def test_search_returns_tracks_of_the_described_style_from_a_trained_tiny_model(live_server, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    tracks = described_catalog(60, "SYNTH_features", seed=4)
    run = crossmusim_train(seed=0, steps=40, backbone="SYNTH_features", overrides={"batch_size": 32})
    catalog_index(model=run.model, tracks=tracks)
    embedding_model_activate(model=run.model, arm="crossmusim")
    _, key = api_key_create(name="player-app")
    response = httpx.get(f"{live_server.url}/api/v1/search", params={"q": "traditional hornpipe dance music", "k": 5},
                         headers={"Authorization": f"Api-Key {key}"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"id": run.model.pk, "name": "crossmusim", "version": 1}
    assert [item["position"] for item in body["items"]] == [1, 2, 3, 4, 5]
    by_id = {t.pk: t for t in tracks}
    styles = [by_id[item["track"]].labels["style"] for item in body["items"]]
    assert styles.count("hornpipe") >= 4, styles
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1
    assert body["items"][0]["title"] == by_id[body["items"][0]["track"]].title
