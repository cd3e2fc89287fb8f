"""GET /api/v1/search over real HTTP: bad input and missing models answer 4xx/5xx with a reason."""

import numpy as np
import pytest

from recommender.services.embeddings import embedding_model_activate, embedding_model_register, track_embeddings_write
from tests.recommender.embeddings_fixtures import staff_http_client, synthetic_tracks

pytestmark = pytest.mark.django_db(transaction=True)


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
