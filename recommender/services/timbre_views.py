"""Timbre views of training tracks: the backbone's patch features of the track's audio heard otherwise.

CrossMuSim's training pools a track, with ``AugmentConfig.view_probability``, from one of its views
instead of its own features, so the projection learns that another sound is not another style (chosen on
the held-out-instrument validation family; docs/model.md). A view is the track's audio through
``recommender.crossmusim.audio_augment`` (spectral envelope, room, saturation), seeded by the audio's
checksum and the view's index, then the backbone: cached like the features themselves, one ``.npy`` per
(checksum, index) under ``<features>/<backbone>-timbre-v1``, so a re-run or a rebuilt database computes
nothing again. It costs one backbone pass per view (about 0.35 s of CPU for a 25-s track).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recommender.models import Track
from recommender.services.embeddings import (
    FEATURE_SAMPLE_RATE,
    FeatureCache,
    FeatureExtractionReport,
    Progress,
    cached_features,
    feature_cache,
    no_progress,
)

VIEWS_VERSION = "timbre-v1"  # bump when the augmentation changes: old views stay under the old folder


@dataclass(frozen=True)
class TimbreView:
    """One view of a track, shaped like a track for the feature extraction (its cache key as ``checksum``)."""

    source_checksum: str
    index: int
    audio_path: str

    @property
    def checksum(self) -> str:
        return f"{self.source_checksum}-{self.index}"


def timbre_view_cache(backbone: str) -> FeatureCache:
    return feature_cache(f"{backbone}-{VIEWS_VERSION}")


def view_generator(view: TimbreView) -> np.random.Generator:
    """The view's own random draws: the same audio and index give the same view on any machine."""
    return np.random.default_rng([int(view.source_checksum[:15], 16), view.index])


def _augment(view: TimbreView, wave: np.ndarray) -> np.ndarray:
    from recommender.crossmusim.audio_augment import augment_timbre

    return augment_timbre(wave, FEATURE_SAMPLE_RATE, view_generator(view))


def timbre_view_features(
    *, tracks: Sequence[Track], views: int, backbone: str, extractor_factory: Callable[[], object] | None = None,
    progress: Progress = no_progress,
) -> tuple[list[list[np.ndarray]], FeatureExtractionReport]:
    """``views`` timbre views of each track (computed where not cached), aligned with ``tracks``.

    A track whose audio cannot be read or embedded gets fewer views (the report names it); training then
    sees it through its own features only.
    """
    wanted = [TimbreView(track.checksum, index, track.audio_path) for track in tracks for index in range(views)]
    kept, features, report = cached_features(tracks=wanted, cache=timbre_view_cache(backbone),
                                             extractor_factory=extractor_factory, progress=progress,
                                             transform=_augment)
    by_track: dict[str, list[np.ndarray]] = {}
    for view, patches in zip(kept, features, strict=True):
        by_track.setdefault(view.source_checksum, []).append(patches)
    return [by_track.get(track.checksum, []) for track in tracks], report
