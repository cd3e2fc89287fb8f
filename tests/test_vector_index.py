import numpy as np
import pytest
from django.db import connection

from recommender.models import EmbeddingModel, Track, TrackEmbedding
from recommender.vector_index import create_hnsw_index, hnsw_index_name, nearest_tracks


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


def test_orm_knn_query_uses_the_models_hnsw_index(indexed_model):
    model, tracks, vectors = indexed_model
    queryset = nearest_tracks(model, vectors[5], k=10, exclude_track_ids=[tracks[5].pk])
    plan = queryset.explain()
    assert hnsw_index_name(model.pk) in plan, plan


def test_orm_knn_finds_the_true_neighbours(indexed_model):
    model, tracks, vectors = indexed_model
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = np.argsort(-(normed @ normed[7]))[:10]
    found = [row.track_id for row in nearest_tracks(model, vectors[7], k=10)]
    assert found[0] == tracks[7].pk
    assert len(set(found) & {tracks[i].pk for i in exact}) >= 9
