"""Models of the recommender app, one module per domain area."""

from .catalog import DatasetSplit, Track
from .descriptions import Description
from .embeddings import EmbeddingModel, TrackEmbedding

__all__ = ["DatasetSplit", "Description", "EmbeddingModel", "Track", "TrackEmbedding"]
