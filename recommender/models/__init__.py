"""Models of the recommender app, one module per domain area."""

from .catalog import DatasetSplit, Track
from .descriptions import Description, DescriptionFetch
from .embeddings import EmbeddingModel, TrackEmbedding

__all__ = ["DatasetSplit", "Description", "DescriptionFetch", "EmbeddingModel", "Track", "TrackEmbedding"]
