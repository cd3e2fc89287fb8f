"""Versioned embedding models and the vectors they give each track (pgvector)."""

from django.db import models
from pgvector.django import VectorField

from .catalog import Track


class EmbeddingModel(models.Model):
    class Kind(models.TextChoices):
        BASELINE = "baseline"
        CROSSMUSIM = "crossmusim"

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    tower = models.CharField(max_length=50, blank=True)
    dim = models.PositiveIntegerField()
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    checkpoint_path = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    active_for_arm = models.CharField(
        max_length=20, choices=Kind.choices, null=True, blank=True,
        help_text="The arm (baseline / crossmusim) this model currently serves; at most one model per arm",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version"),
            models.UniqueConstraint(fields=["active_for_arm"], name="one_active_model_per_arm"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class TrackEmbedding(models.Model):
    """One vector per (model, track).

    Models differ in dimension, so the column is untyped and each model gets its own
    partial HNSW index over the vector cast to its dimension (``recommender.vector_search.typed_embedding``).
    """

    model = models.ForeignKey(EmbeddingModel, on_delete=models.CASCADE, related_name="embeddings")
    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="embeddings")
    embedding = VectorField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "track"], name="one_vector_per_model_track")]
