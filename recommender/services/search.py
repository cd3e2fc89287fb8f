"""Text-to-music search: embed the query with the active cross-modal model's text tower, then the one KNN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.models import EmbeddingModel, Track
from recommender.selectors import active_model_for_arm
from recommender.vector_search import VectorSpace, nearest_to_vector


@dataclass(frozen=True)
class TrackHit:
    track: Track
    score: float  # cosine similarity


def nearest_tracks_to_vector(model: EmbeddingModel, vector: np.ndarray, k: int,
                             exclude_track_ids: Sequence[int] = ()) -> list[TrackHit]:
    """The k catalog tracks closest to ``vector`` in ``model``'s space, as Track rows with their score."""
    neighbours = nearest_to_vector(VectorSpace.of(model), vector, k, exclude_track_ids)
    tracks = Track.objects.in_bulk([n.track_id for n in neighbours])
    return [TrackHit(track=tracks[n.track_id], score=n.score) for n in neighbours if n.track_id in tracks]


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
