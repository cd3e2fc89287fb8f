"""Reads of the recommender app: catalog pages, embedding models, vector search.

Views and commands call these instead of building querysets themselves, so that every
read of an embedding model or a KNN goes through one place (HackSoft "selectors").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import QuerySet

from recommender.models import DatasetSplit, Description, EmbeddingModel, Track, TrackEmbedding
from recommender.vector_index import nearest_tracks

MODEL_SPEC = re.compile(r"^(?P<name>[^:]+?)(?::v?(?P<version>\d+))?$")
# HNSW returns at most ef_search rows, so a query for k rows needs ef_search >= k.
MIN_EF_SEARCH = 40


class ModelNotFoundError(LookupError):
    """No embedding model matches the given id or name[:version]."""


def embedding_model_get(spec: str | int) -> EmbeddingModel:
    """The model named by ``spec``: a primary key, ``name`` (latest version) or ``name:version``."""
    text = str(spec).strip()
    if text.isdigit():
        model = EmbeddingModel.objects.filter(pk=int(text)).first()
        if model is not None:
            return model
    match = MODEL_SPEC.match(text)
    if match is None:
        raise ModelNotFoundError(f"{spec!r} is not a model id or name[:version]")
    queryset = EmbeddingModel.objects.filter(name=match["name"])
    if match["version"]:
        queryset = queryset.filter(version=int(match["version"]))
    model = queryset.order_by("-version").first()
    if model is None:
        known = ", ".join(str(m) for m in EmbeddingModel.objects.order_by("name", "version")[:20]) or "none"
        raise ModelNotFoundError(f"no embedding model {spec!r} (known: {known})")
    return model


def embedding_model_list() -> QuerySet[EmbeddingModel]:
    return EmbeddingModel.objects.order_by("name", "version")


def embedding_model_next_version(name: str) -> int:
    latest = EmbeddingModel.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first()
    return (latest or 0) + 1


def active_model_for_arm(arm: str) -> EmbeddingModel | None:
    return EmbeddingModel.objects.filter(active_for_arm=arm).first()


def track_list() -> QuerySet[Track]:
    return Track.objects.order_by("id").only("id", "title", "artist", "album", "labels", "duration_s")


def tracks_for_ids(track_ids: Sequence[int] | None = None) -> QuerySet[Track]:
    """All tracks, or the given ones, in id order."""
    queryset = Track.objects.order_by("id")
    return queryset.filter(pk__in=list(track_ids)) if track_ids else queryset


def split_parts(name: str = "default") -> dict[int, str]:
    """track id -> "train" / "val" / "test" for one named split."""
    return dict(DatasetSplit.objects.filter(name=name).values_list("track_id", "part"))


def kept_descriptions() -> dict[int, list[tuple[str, float, str]]]:
    """track id -> [(text, score, perspective)] of the descriptions the miner kept: the training text."""
    texts: dict[int, list[tuple[str, float, str]]] = {}
    rows = (Description.objects.filter(kept=True).order_by("track_id", "id")
            .values_list("track_id", "text", "score", "perspective"))
    for track_id, text, score, perspective in rows:
        texts.setdefault(track_id, []).append((text, 1.0 if score is None else float(score), perspective or ""))
    return texts


def all_track_labels() -> list[dict]:
    return [labels or {} for labels in Track.objects.values_list("labels", flat=True)]


def model_embedding_count(model: EmbeddingModel) -> int:
    return TrackEmbedding.objects.filter(model=model).count()


@dataclass(frozen=True)
class TrackHit:
    track: Track
    score: float


def nearest_tracks_to_vector(
    model: EmbeddingModel, vector: np.ndarray, k: int, exclude_track_ids: Sequence[int] = ()
) -> list[TrackHit]:
    """The k catalog tracks closest to ``vector`` in ``model``'s space (cosine similarity as score)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(MIN_EF_SEARCH, int(k)))])
        rows = list(nearest_tracks(model, vector, k, exclude_track_ids).select_related("track"))
    return [TrackHit(track=row.track, score=1.0 - float(row.distance)) for row in rows]


class SearchUnavailableError(RuntimeError):
    """Text search cannot run now; ``status`` is the HTTP status that says why (409 / 503)."""

    def __init__(self, reason: str, status: int):
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class TextSearchResult:
    query: str
    model: EmbeddingModel
    hits: list[TrackHit]


def text_search(query: str, k: int, arm: str = EmbeddingModel.Kind.CROSSMUSIM) -> TextSearchResult:
    """Tracks whose audio embedding is closest to the text query, in the arm's active cross-modal space."""
    from recommender.services.embedding_runtime import CheckpointError, NotCrossModalError, text_embed

    model = active_model_for_arm(arm)
    if model is None:
        raise SearchUnavailableError(
            f"no model is active for the {arm} arm; train one and run "
            f"'manage.py index_embeddings MODEL --activate-arm {arm}'", status=503)
    try:
        vector = text_embed(model, [query])[0]
    except NotCrossModalError as error:
        raise SearchUnavailableError(f"{error}: only a cross-modal model can search by text", status=409) from error
    except CheckpointError as error:
        raise SearchUnavailableError(str(error), status=503) from error
    return TextSearchResult(query=query, model=model, hits=nearest_tracks_to_vector(model, vector, k))
