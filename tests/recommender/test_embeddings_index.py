"""Registry, activation and the pgvector index round trip of the embedding services."""

import numpy as np
import pytest
from django.db import connection

from recommender.models import EmbeddingModel, TrackEmbedding
from recommender.selectors import (
    ModelNotFoundError,
    active_model_for_arm,
    embedding_model_get,
)
from recommender.services.embeddings import (
    ActivationError,
    embedding_model_activate,
    embedding_model_register,
    track_embeddings_write,
)
from recommender.services.search import nearest_tracks_to_vector
from recommender.vector_search import VectorSpace, explain_knn, hnsw_index_name
from tests.recommender.embeddings_fixtures import synthetic_tracks

pytestmark = pytest.mark.django_db


def _indexed(name: str, count: int = 40, dim: int = 8, seed: int = 0) -> EmbeddingModel:
    tracks = synthetic_tracks(count, prefix=f"{name}-")
    model = embedding_model_register(name=name, kind="baseline", dim=dim)
    vectors = np.random.default_rng(seed).normal(size=(count, dim))
    track_embeddings_write(model=model, track_ids=[t.pk for t in tracks], vectors=vectors)
    return model


def test_versions_increment_per_name():
    first = embedding_model_register(name="alpha", kind="baseline", dim=4)
    second = embedding_model_register(name="alpha", kind="baseline", dim=4)
    other = embedding_model_register(name="beta", kind="crossmusim", dim=4)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert embedding_model_get("alpha") == second
    assert embedding_model_get("alpha:1") == first
    assert embedding_model_get(str(other.pk)) == other
    with pytest.raises(ModelNotFoundError, match="alpha:7"):
        embedding_model_get("alpha:7")


def test_index_round_trip_nearest_neighbour_is_the_track_itself():
    tracks = synthetic_tracks(2000)
    dim = 32
    vectors = np.random.default_rng(1).normal(size=(len(tracks), dim)).astype(np.float32)
    model = embedding_model_register(name="roundtrip", kind="baseline", dim=dim)
    report = track_embeddings_write(model=model, track_ids=[t.pk for t in tracks], vectors=vectors)
    assert report.written == len(tracks) == TrackEmbedding.objects.filter(model=model).count()
    assert model.indexed_at is not None
    for i in (0, 17, 999, 1999):
        hits = nearest_tracks_to_vector(model, vectors[i], k=5)
        assert hits[0].track.pk == tracks[i].pk
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    plan = explain_knn(VectorSpace.of(model), 10, tracks[3].pk)
    assert hnsw_index_name(model.pk) in plan, plan
    # Stored values survive the COPY text round trip.
    stored = np.asarray(TrackEmbedding.objects.get(model=model, track=tracks[5]).embedding)
    np.testing.assert_allclose(stored, vectors[5], rtol=1e-6)


def test_reindex_replaces_vectors_and_keeps_one_index():
    model = _indexed("reindex", count=30)
    track_ids = list(TrackEmbedding.objects.filter(model=model).values_list("track_id", flat=True))
    track_embeddings_write(model=model, track_ids=track_ids[:10], vectors=np.ones((10, model.dim)))
    assert TrackEmbedding.objects.filter(model=model).count() == 10
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [hnsw_index_name(model.pk)])
        assert cursor.fetchone()[0] == 1


def test_write_rejects_wrong_shapes_and_nan():
    model = _indexed("shapes", count=5)
    with pytest.raises(ValueError, match="shape"):
        track_embeddings_write(model=model, track_ids=[1, 2], vectors=np.zeros((2, model.dim + 1)))
    with pytest.raises(ValueError, match="NaN"):
        track_embeddings_write(model=model, track_ids=[1], vectors=np.full((1, model.dim), np.nan))
    assert TrackEmbedding.objects.filter(model=model).count() == 5


def test_one_active_model_per_arm_and_atomic_swap():
    first, second = _indexed("arm-a"), _indexed("arm-b", seed=1)
    embedding_model_activate(model=first, arm="crossmusim")
    assert active_model_for_arm("crossmusim") == first
    embedding_model_activate(model=second, arm="crossmusim")
    first.refresh_from_db()
    assert first.active_for_arm is None
    assert active_model_for_arm("crossmusim") == second
    assert EmbeddingModel.objects.filter(active_for_arm="crossmusim").count() == 1
    embedding_model_activate(model=first, arm="baseline")
    assert active_model_for_arm("baseline") == first and active_model_for_arm("crossmusim") == second


def test_activation_refuses_unknown_arm_and_unindexed_model():
    model = embedding_model_register(name="raw", kind="baseline", dim=4)
    with pytest.raises(ActivationError, match="no index"):
        embedding_model_activate(model=model, arm="baseline")
    with pytest.raises(ActivationError, match="unknown arm"):
        embedding_model_activate(model=_indexed("ok"), arm="gold")


def test_a_model_too_wide_for_hnsw_is_stored_and_searched_exactly():
    model = embedding_model_register(name="wide", kind="baseline", dim=2100)
    tracks = synthetic_tracks(20, prefix="wide-")
    vectors = np.random.default_rng(2).normal(size=(20, 2100))
    report = track_embeddings_write(model=model, track_ids=[t.pk for t in tracks], vectors=vectors)
    assert "2000 dimensions" in report.index_error and model.indexed_at is not None
    assert nearest_tracks_to_vector(model, vectors[11], k=3)[0].track.pk == tracks[11].pk
