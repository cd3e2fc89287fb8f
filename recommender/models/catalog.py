"""Catalog: the tracks and the named train/validation/test splits over them."""

from django.db import models


class Track(models.Model):
    title = models.CharField(max_length=500)
    artist = models.CharField(max_length=300, blank=True, help_text="Artist or composer")
    album = models.CharField(max_length=300, blank=True, help_text="Album or collection")
    duration_s = models.FloatField()
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField(default=1)
    checksum = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the audio file")
    audio_path = models.CharField(max_length=1000)
    metadata = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True, help_text="style, composer, meter, mode, tempo, ensemble…")
    document_text = models.TextField(blank=True, help_text="Text that ships with the music")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.artist})" if self.artist else self.title


class DatasetSplit(models.Model):
    """One track's part in a named split ("default", "heldout_styles", …)."""

    class Part(models.TextChoices):
        TRAIN = "train"
        VALIDATION = "val"
        TEST = "test"

    name = models.CharField(max_length=100, db_index=True)
    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="splits")
    part = models.CharField(max_length=10, choices=Part.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "track"], name="one_part_per_split")]
