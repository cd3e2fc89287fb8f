"""The one KNN (recommender.vector_search) on a real pgvector HNSW index: it uses the model's partial index and
finds the true neighbours, around a seed track or a query vector, with exclusions."""

import numpy as np
import pytest
from django.db import connection

from recommender.models import EmbeddingModel, Track, TrackEmbedding
from recommender.vector_search import (
    VectorSpace,
    create_hnsw_index,
    explain_knn,
    hnsw_index_name,
    nearest_to_track,
    nearest_to_vector,
)


@pytest.fixture
def indexed_model(db):
    rng = np.random.default_rng(0)
    model = EmbeddingModel.objects.create(name="test", kind="baseline", dim=16)
    tracks = Track.objects.bulk_create(
        Track(title=f"t{i}", duration_s=1, sample_rate=16000, checksum=f"{i:064d}", audio_path="x") for i in range(3000)
    )
    vectors = rng.normal(size=(len(tracks), 16)).astype(np.float32)
    TrackEmbedding.objects.bulk_create(
        TrackEmbedding(model=model, track=t, embedding=v) for t, v in zip(tracks, vectors, strict=True)
    )
    create_hnsw_index(model)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recommender_trackembedding")
    return model, tracks, vectors


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.argsort(-(normed @ (query / np.linalg.norm(query))))[:k]


def test_knn_uses_the_models_hnsw_index(indexed_model):
    model, tracks, _ = indexed_model
    assert hnsw_index_name(model.pk) in explain_knn(VectorSpace.of(model), 10, tracks[5].pk)


def test_knn_around_a_seed_finds_the_true_neighbours_and_leaves_out_seed_and_exclusions(indexed_model):
    model, tracks, vectors = indexed_model
    exact = [tracks[i].pk for i in _exact(vectors, vectors[7], 12)]  # exact[0] is the seed itself
    found = [n.track_id for n in nearest_to_track(VectorSpace.of(model), tracks[7].pk, 10, exclude=[exact[1]])]
    assert tracks[7].pk not in found and exact[1] not in found
    assert len(set(found) & set(exact[2:12])) >= 9


def test_knn_around_a_query_vector_with_k_above_ef_search(indexed_model, settings):
    model, tracks, vectors = indexed_model
    query = vectors[3] + 0.01
    found = nearest_to_vector(VectorSpace.of(model), query, 60)
    assert len(found) == 60 and settings.VECTOR_EF_SEARCH < 60  # the iterative scan goes past ef_search
    assert found[0].track_id == tracks[3].pk and found[0].score == pytest.approx(1.0, abs=1e-3)
    assert len({n.track_id for n in found[:10]} & {tracks[i].pk for i in _exact(vectors, query, 10)}) >= 9
    with pytest.raises(ValueError, match="NaN"):
        nearest_to_vector(VectorSpace.of(model), np.full(16, np.nan), 5)
