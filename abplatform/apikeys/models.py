"""The API key row: only a lookup prefix and the SHA-256 of the full key are stored."""

from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    """An API key: only a lookup prefix and the SHA-256 of the full key are stored.

    ``player`` keys ship inside client apps and reach the player API only (recommendations,
    events, tracks, search); ``analyst`` keys also read experiment results.
    """

    class Scope(models.TextChoices):
        PLAYER = "player"
        ANALYST = "analyst"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.PLAYER)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "experiments_apikey"  # created by the experiments app before the key code moved here
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
