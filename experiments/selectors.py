"""Reads of the experiments app on the serving hot path: which arm serves a user (the KNN is elsewhere).

The serving configuration (per placement: its layer salt, default model, and the running
experiments with their buckets, variants and embedding models) changes a few times a day but
is read on every request, so it is cached in-process for ``SERVING_CACHE_TTL_S`` seconds; the
lifecycle services clear the cache of their own process at once. Choosing a user's arm is then
two hashes and a tuple lookup (``ServingPlacement.assign``), however many experiments run: no SQL.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from experiments.assignment import BUCKETS, ArmSpec, control_key, variant_for_bucket
from experiments.assignment import bucket as hash_bucket
from experiments.layers import FREE, BucketRange, layer_bucket, owner_table
from experiments.models import DEFAULT_PLACEMENT, BucketAllocation, Experiment, Placement, Variant
from recommender.models import EmbeddingModel
from recommender.vector_search import VectorSpace, track_titles

SERVING_CACHE_TTL_S = 2.0
BASELINE_ARM = EmbeddingModel.Kind.BASELINE
HOLDOUT_LAUNCHED_VARIANT = "launched"  # a holdout's arm that serves whatever the placement's default is now
ServingArm = VectorSpace  # what a variant serves: an embedding model's vector space


@dataclass(frozen=True)
class ServingVariant:
    variant_id: int
    key: str
    arm: ServingArm | None  # None: the placement's default (a holdout's launched arm) when there is none


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
class Assigned:
    """What one request of one user on one placement gets."""

    arm: ServingArm | None  # None: nothing to serve (no default model, no baseline)
    experiment: ServingExperiment | None  # None: no experiment holds the user's bucket
    variant: ServingVariant | None


@dataclass(frozen=True)
class ServingPlacement:
    key: str
    layer_salt: str
    default: ServingArm | None  # the placement's default model, else the active baseline arm
    experiments: tuple[ServingExperiment, ...]  # running ones, indexed by ``owners``
    owners: tuple[int, ...]  # layer bucket -> index into ``experiments`` (FREE: the default serves)

    def assign(self, user_id: str) -> Assigned:
        """The user's experiment (from the layer bucket) and variant (from the experiment's own salt)."""
        owner = self.owners[layer_bucket(self.layer_salt, user_id)] if self.experiments else FREE
        if owner == FREE:
            return Assigned(self.default, None, None)
        experiment = self.experiments[owner]
        variant = experiment.variants[variant_for_bucket(hash_bucket(experiment.salt, "variant", user_id),
                                                         experiment.arms)]
        return Assigned(variant.arm or self.default, experiment, variant)


@dataclass(frozen=True)
class ServingConfig:
    placements: dict[str, ServingPlacement]
    fallback: ServingArm | None  # the active baseline arm: the default of a placement that has none

    @property
    def experiment(self) -> ServingExperiment | None:
        """The first running experiment of the default placement (benches and tools of the one-experiment era)."""
        placement = self.placements.get(DEFAULT_PLACEMENT)
        return placement.experiments[0] if placement and placement.experiments else None


def _arm(model: EmbeddingModel) -> ServingArm:
    return VectorSpace.of(model)


def _serving_experiment(experiment: Experiment, variants: list[Variant]) -> ServingExperiment:
    holdout = experiment.kind == Experiment.Kind.HOLDOUT
    return ServingExperiment(
        experiment_id=experiment.pk, name=experiment.name, salt=experiment.salt,
        traffic_fraction=float(experiment.traffic_fraction),
        arms=tuple(ArmSpec(v.key, int(v.weight), v.is_control) for v in variants),
        variants={v.key: ServingVariant(v.pk, v.key, None if holdout and v.key == HOLDOUT_LAUNCHED_VARIANT
                                        else _arm(v.embedding_model)) for v in variants},
        kind=experiment.kind,
    )


def _load_serving_config() -> ServingConfig:
    """Five queries per refresh, whatever the number of placements and experiments."""
    baseline = EmbeddingModel.objects.filter(active_for_arm=BASELINE_ARM).first()
    fallback = _arm(baseline) if baseline else None
    running = {e.pk: e for e in Experiment.objects.filter(status=Experiment.Status.RUNNING)}
    variants: dict[int, list[Variant]] = defaultdict(list)
    for v in Variant.objects.filter(experiment_id__in=list(running)).select_related("embedding_model").order_by("id"):
        variants[v.experiment_id].append(v)
    ranges: dict[int, list[BucketRange]] = defaultdict(list)
    for experiment_id, start, end in BucketAllocation.objects.filter(
            experiment_id__in=list(running), released_at__isnull=True).values_list("experiment_id", "start", "end"):
        ranges[experiment_id].append(BucketRange(start, end))
    placements = {}
    for placement in Placement.objects.select_related("default_model"):
        held = sorted((e for e in running.values() if e.placement_id == placement.key and variants[e.pk]
                       and ranges[e.pk]), key=lambda e: e.pk)
        experiments = tuple(_serving_experiment(e, variants[e.pk]) for e in held)
        placements[placement.key] = ServingPlacement(
            key=placement.key, layer_salt=placement.layer_salt,
            default=_arm(placement.default_model) if placement.default_model else fallback,
            experiments=experiments, owners=owner_table([ranges[e.pk] for e in held]))
    return ServingConfig(placements=placements, fallback=fallback)


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


@dataclass(frozen=True)
class PlacementLayer:
    """A placement as the experiments list shows it: its default, its free share, what holds the rest."""

    key: str
    default_model: str  # "name vN", or "the baseline arm"
    free_share: float
    experiments: dict[int, tuple[str, float]]  # experiment id -> (kind, share) of those holding buckets now


def placement_layers() -> list[PlacementLayer]:
    """Every placement's layer in three queries (placements, held buckets, experiments), whatever their number."""
    held: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for placement, experiment_id, start, end in BucketAllocation.objects.filter(released_at__isnull=True).values_list(
            "placement_id", "experiment_id", "start", "end"):
        held[placement][experiment_id] += end - start
    kinds = dict(Experiment.objects.filter(pk__in=[e for h in held.values() for e in h]).values_list("pk", "kind"))
    return [PlacementLayer(
        key=p.key, default_model=str(p.default_model) if p.default_model else "the baseline arm",
        free_share=1 - sum(held[p.key].values()) / BUCKETS,
        experiments={e: (kinds.get(e, ""), n / BUCKETS) for e, n in held[p.key].items()})
        for p in Placement.objects.select_related("default_model")]


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
