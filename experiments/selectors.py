"""Reads of the experiments app on the serving hot path: which arms serve (the KNN is ``recommender.vector_search``).

The serving configuration (the running experiment, its variants and their embedding
models, or the baseline arm when nothing runs) changes a few times a day but is read on
every request, so it is cached in-process for ``SERVING_CACHE_TTL_S`` seconds; the
lifecycle services clear the cache of their own process at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from experiments.assignment import ArmSpec, control_key
from experiments.models import Experiment, Variant
from recommender.models import EmbeddingModel
from recommender.vector_search import VectorSpace, track_titles

SERVING_CACHE_TTL_S = 2.0
BASELINE_ARM = EmbeddingModel.Kind.BASELINE
ServingArm = VectorSpace  # what a variant serves: an embedding model's vector space


@dataclass(frozen=True)
class ServingVariant:
    variant_id: int
    key: str
    arm: ServingArm


@dataclass(frozen=True)
class ServingExperiment:
    experiment_id: int
    name: str
    salt: str
    traffic_fraction: float
    arms: tuple[ArmSpec, ...]
    variants: dict[str, ServingVariant]
    kind: str = Experiment.Kind.AB

    @property
    def interleaved(self) -> bool:
        return self.kind == Experiment.Kind.INTERLEAVING

    def teams(self) -> tuple[ServingVariant, ServingVariant]:
        """Interleaving: (team A, team B) = (the control variant, the other one)."""
        control = control_key(self.arms)
        other = next(a.key for a in self.arms if a.key != control)
        return self.variants[control], self.variants[other]


@dataclass(frozen=True)
class ServingConfig:
    experiment: ServingExperiment | None
    fallback: ServingArm | None  # the active baseline arm, served when no experiment runs


def _arm(model: EmbeddingModel) -> ServingArm:
    return VectorSpace.of(model)


def _load_serving_config() -> ServingConfig:
    experiment = Experiment.objects.filter(status=Experiment.Status.RUNNING).order_by("-started_at", "-id").first()
    serving = None
    if experiment is not None:
        variants = list(Variant.objects.filter(experiment=experiment).select_related("embedding_model").order_by("id"))
        if variants:
            serving = ServingExperiment(
                experiment_id=experiment.pk, name=experiment.name, salt=experiment.salt,
                traffic_fraction=float(experiment.traffic_fraction),
                arms=tuple(ArmSpec(v.key, int(v.weight), v.is_control) for v in variants),
                variants={v.key: ServingVariant(v.pk, v.key, _arm(v.embedding_model)) for v in variants},
                kind=experiment.kind,
            )
    baseline = EmbeddingModel.objects.filter(active_for_arm=BASELINE_ARM).first()
    return ServingConfig(experiment=serving, fallback=_arm(baseline) if baseline else None)


_config_lock = threading.Lock()
_config: tuple[float, ServingConfig] | None = None


def serving_config() -> ServingConfig:
    global _config
    cached = _config
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    with _config_lock:
        config = _load_serving_config()
        _config = (now + SERVING_CACHE_TTL_S, config)
    return config


def clear_serving_cache() -> None:
    """Forget the serving configuration and the cached track titles (lifecycle changes, tests)."""
    global _config
    _config = None
    track_titles.clear()


def model_placements(model_ids) -> dict[int, list[str]]:
    """model id -> where experiments place it ("variant 'treatment' of experiment 'X' (running)"), archived left out.

    Registered with the listening room's model cards from ``ExperimentsConfig.ready`` (recommender must not
    import experiments, so experiments tells it)."""
    found: dict[int, list[str]] = {}
    variants = (Variant.objects.filter(embedding_model_id__in=list(model_ids))
                .exclude(experiment__status=Experiment.Status.ARCHIVED)
                .select_related("experiment").order_by("experiment_id", "id"))
    for variant in variants:
        found.setdefault(variant.embedding_model_id, []).append(
            f"variant '{variant.key}' of experiment '{variant.experiment.name}' ({variant.experiment.status})")
    return found
