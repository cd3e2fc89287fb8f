"""Text descriptions of tracks, with their provenance and the mining verdict."""

from django.db import models

from .catalog import Track


class Description(models.Model):
    class Source(models.TextChoices):
        WEB = "web"
        DOCUMENT = "document"
        LLM = "llm"
        METADATA = "metadata", "metadata template (not an LLM)"

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="descriptions")
    text = models.TextField()
    source = models.CharField(max_length=20, choices=Source.choices, db_index=True)
    origin = models.CharField(max_length=1000, blank=True, help_text="URL, prompt id or document field")
    perspective = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    score = models.FloatField(null=True, blank=True)
    kept = models.BooleanField(null=True, db_index=True, help_text="None until mined")
    reason = models.CharField(max_length=200, blank=True, help_text="Why it was rejected")
    text_hash = models.CharField(max_length=64, db_index=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["track", "source", "origin", "text_hash"], name="unique_description")
        ]


class DescriptionFetch(models.Model):
    """One unit of sourcing work (a URL, a prompt, a track's document) and how it went.

    It makes sourcing resumable (a unit that succeeded is not run again unless forced)
    and keeps every failure with its reason for the summary table and the admin.
    """

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="description_fetches")
    source = models.CharField(max_length=20, choices=Description.Source.choices, db_index=True)
    origin = models.CharField(max_length=1000, help_text="URL, prompt id or document unit")
    ok = models.BooleanField(db_index=True)
    error = models.CharField(max_length=200, blank=True)
    found = models.PositiveIntegerField(default=0, help_text="Descriptions this unit produced")
    details = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["track", "source", "origin"], name="unique_description_fetch")
        ]
