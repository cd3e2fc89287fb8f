"""pgvector HNSW indexes, one partial index per embedding model, and KNN through the ORM.

Embedding models differ in dimension, so ``TrackEmbedding.embedding`` is an untyped
``vector``; each model's index is built over ``embedding::vector(dim)`` restricted to
its rows, and queries cast the same way so that PostgreSQL picks that index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import connection
from django.db.models import QuerySet
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from recommender.models import EmbeddingModel, TrackEmbedding

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


def hnsw_index_name(model_id: int) -> str:
    return f"trackembedding_hnsw_model_{model_id}"


def create_hnsw_index(model: EmbeddingModel, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """Build (or keep) the cosine HNSW index for one model's vectors."""
    name = hnsw_index_name(model.pk)
    table = TrackEmbedding._meta.db_table
    with connection.cursor() as cursor:
        # Inside a transaction that just wrote the vectors, deferred FK checks block CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw "
            f"((embedding::vector({int(model.dim)})) vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
            f"WHERE model_id = {int(model.pk)}"
        )
    return name


def drop_hnsw_index(model: EmbeddingModel) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {hnsw_index_name(model.pk)}")


def nearest_tracks(
    model: EmbeddingModel,
    query: Sequence[float] | np.ndarray,
    k: int,
    exclude_track_ids: Sequence[int] = (),
) -> QuerySet[TrackEmbedding]:
    """The k nearest tracks to ``query`` by cosine distance, annotated with ``distance``."""
    typed = Cast("embedding", VectorField(dimensions=model.dim))
    queryset = TrackEmbedding.objects.filter(model_id=model.pk)
    if exclude_track_ids:
        queryset = queryset.exclude(track_id__in=list(exclude_track_ids))
    return queryset.annotate(distance=CosineDistance(typed, list(map(float, query)))).order_by("distance")[:k]
