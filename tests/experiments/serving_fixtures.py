"""A tiny serving world for the experiments tests: tracks, two indexed arms, an API key, an experiment."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from abplatform.apikeys.authentication import clear_api_key_cache
from abplatform.apikeys.services import api_key_create
from experiments.models import Experiment
from experiments.selectors import clear_serving_cache
from experiments.services import VariantSpec, experiment_create, experiment_start
from recommender.models import EmbeddingModel, Track, TrackEmbedding
from recommender.vector_search import create_hnsw_index


@dataclass
class ServingWorld:
    tracks: list[Track]
    baseline: EmbeddingModel
    treatment: EmbeddingModel
    vectors: dict[int, np.ndarray]  # model id -> [n_tracks, dim] in track order
    key: str
    experiment: Experiment | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"}

    def track_ids(self) -> list[int]:
        return [t.pk for t in self.tracks]


def _model(name: str, kind: str, dim: int, arm: str | None) -> EmbeddingModel:
    return EmbeddingModel.objects.create(name=name, kind=kind, dim=dim, indexed_at=timezone.now(),
                                         active_for_arm=arm)


def build_world(n_tracks: int = 120, dim: int = 16, seed: int = 0, start_experiment: bool = True,
                traffic_fraction: float = 1.0) -> ServingWorld:
    clear_serving_cache()
    clear_api_key_cache()
    rng = np.random.default_rng(seed)
    tag = uuid.uuid4().hex[:8]
    tracks = Track.objects.bulk_create(
        Track(title=f"tune {i}", artist=f"composer {i % 5}", album="test", duration_s=20.0, sample_rate=16000,
              checksum=hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(), audio_path="none")
        for i in range(n_tracks)
    )
    baseline = _model(f"baseline-{tag}", EmbeddingModel.Kind.BASELINE, dim, EmbeddingModel.Kind.BASELINE)
    treatment = _model(f"crossmusim-{tag}", EmbeddingModel.Kind.CROSSMUSIM, dim, EmbeddingModel.Kind.CROSSMUSIM)
    vectors = {}
    for model in (baseline, treatment):
        matrix = rng.normal(size=(n_tracks, dim)).astype(np.float32)
        vectors[model.pk] = matrix
        TrackEmbedding.objects.bulk_create(
            TrackEmbedding(model=model, track=track, embedding=row.tolist())
            for track, row in zip(tracks, matrix, strict=True)
        )
        create_hnsw_index(model)
    _, key = api_key_create(name=f"player-{tag}")
    world = ServingWorld(tracks=tracks, baseline=baseline, treatment=treatment, vectors=vectors, key=key)
    if start_experiment:
        world.experiment = experiment_create(
            name=f"exp-{tag}", traffic_fraction=traffic_fraction,
            variants=[VariantSpec("control", baseline.pk, 50, True), VariantSpec("treatment", treatment.pk, 50)],
        )
        world.experiment = experiment_start(experiment=world.experiment)
    clear_serving_cache()
    return world


def exact_neighbours(world: ServingWorld, model: EmbeddingModel, seed_track_id: int, k: int,
                     exclude: tuple[int, ...] = ()) -> list[int]:
    """Brute-force cosine neighbours, the ground truth of the KNN."""
    matrix = world.vectors[model.pk]
    ids = world.track_ids()
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = unit @ unit[ids.index(seed_track_id)]
    banned = {seed_track_id, *exclude}
    order = [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] not in banned]
    return order[:k]
