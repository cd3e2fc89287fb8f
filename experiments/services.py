"""Writes of the experiments app: experiment lifecycle, variants and API keys.

Lifecycle: draft -> running <-> paused -> stopped -> archived. Once started, an experiment's
variants, weights, salt and traffic fraction are locked (a change means a new
experiment), and a stopped experiment never runs again. Experiments run side by side: each
holds its own free buckets of its placement's layer from start to stop (``experiments.layers``),
so they never share a user and starting or stopping one never moves another's users; a pause
keeps the buckets (its users get the placement's default meanwhile and come back to the same arm).

Only a draft that never started can be deleted: an experiment that ran has assignments,
events and aggregates whose foreign keys carry no database constraint (see models), so
deleting it would orphan them silently. A finished experiment is archived instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from experiments.layers import BucketRange, OverAllocationError, allocate, buckets_for_share, describe, free_count
from experiments.models import DEFAULT_PLACEMENT, BucketAllocation, Experiment, Placement, Variant
from experiments.selectors import clear_serving_cache
from recommender.models import EmbeddingModel
from recommender.selectors import ModelNotFoundError, embedding_model_get


class ExperimentError(ValueError):
    """A lifecycle rule was broken; the message says which."""


class ExperimentLockedError(ExperimentError):
    pass


@dataclass(frozen=True)
class VariantSpec:
    key: str
    embedding_model_id: int
    weight: int = 50
    is_control: bool = False
    name: str = ""


# --- Experiments ------------------------------------------------------------------------

def experiment_create(
    *, name: str, variants: Sequence[VariantSpec], hypothesis: str = "", traffic_fraction: float = 1.0,
    kind: str = Experiment.Kind.AB, placement: str = DEFAULT_PLACEMENT, scheduled_start_at=None,
    scheduled_stop_at=None,
) -> Experiment:
    """A draft on ``placement`` that will take ``traffic_fraction`` of its users (its layer's buckets) at start."""
    if not 0.0 <= traffic_fraction <= 1.0:
        raise ExperimentError(f"traffic fraction must lie in [0, 1], got {traffic_fraction}")
    if kind not in Experiment.Kind.values:
        raise ExperimentError(f"experiment kind must be one of {Experiment.Kind.values}, got {kind!r}")
    placement_get(placement)
    with transaction.atomic():
        experiment = Experiment.objects.create(name=name, hypothesis=hypothesis, traffic_fraction=traffic_fraction,
                                               kind=kind, placement_id=placement,
                                               scheduled_start_at=scheduled_start_at,
                                               scheduled_stop_at=scheduled_stop_at)
        variants_set(experiment=experiment, variants=variants)
    return experiment


def variants_set(*, experiment: Experiment, variants: Sequence[VariantSpec]) -> list[Variant]:
    """Replace a draft experiment's variants; refused once it has started."""
    experiment.refresh_from_db(fields=["status", "started_at"])
    ensure_unlocked(experiment)
    keys = [spec.key for spec in variants]
    if len(variants) < 2:
        raise ExperimentError("an experiment needs at least two variants")
    check_variant_count(experiment.kind, len(variants))
    if len(set(keys)) != len(keys):
        raise ExperimentError(f"variant keys must be unique, got {keys}")
    if sum(spec.is_control for spec in variants) > 1:
        raise ExperimentError("at most one variant can be the control")
    if any(spec.weight < 1 for spec in variants):
        raise ExperimentError("variant weights must be positive integers")
    specs = list(variants)
    if not any(spec.is_control for spec in specs):  # the first one is the default arm
        first = specs[0]
        specs[0] = VariantSpec(first.key, first.embedding_model_id, first.weight, True, first.name)
    with transaction.atomic():
        experiment.variants.all().delete()
        return [
            Variant.objects.create(
                experiment=experiment, key=spec.key, name=spec.name or spec.key, weight=spec.weight,
                embedding_model_id=spec.embedding_model_id, is_control=spec.is_control,
            )
            for spec in specs
        ]


def interleaving_variant_count_error(count: int) -> str:
    return (f"an interleaving experiment merges exactly two rankers, so it needs exactly two variants (the control "
            f"and the challenger); it has {count}")


def check_variant_count(kind: str, count: int) -> None:
    """Interleaving merges two rankers' lists: exactly two variants (an A/B test takes two or more)."""
    if kind == Experiment.Kind.INTERLEAVING and count != 2:
        raise ExperimentError(interleaving_variant_count_error(count))


def ensure_unlocked(experiment: Experiment) -> None:
    if experiment.is_locked:
        raise ExperimentLockedError(
            f"experiment {experiment.name!r} has started: its variants, weights, salt and traffic fraction are "
            "locked (create a new experiment to change them)"
        )


def experiment_start(*, experiment: Experiment) -> Experiment:
    """Start a draft (it takes its share of free buckets) or resume a paused experiment (same buckets)."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status in (Experiment.Status.STOPPED, Experiment.Status.ARCHIVED):
            raise ExperimentError(f"experiment {experiment.name!r} is {experiment.status} and cannot restart")
        if experiment.status == Experiment.Status.RUNNING:
            return experiment
        variants = list(experiment.variants.select_related("embedding_model"))
        if len(variants) < 2:
            raise ExperimentError("an experiment needs at least two variants to start")
        check_variant_count(experiment.kind, len(variants))
        unindexed = [v.key for v in variants if v.embedding_model.indexed_at is None]
        if unindexed:
            raise ExperimentError(f"variants {unindexed} use embedding models that are not indexed yet")
        if not held_ranges(experiment):
            _allocate_buckets(experiment)
        experiment.status = Experiment.Status.RUNNING
        if experiment.started_at is None:
            experiment.started_at = timezone.now()
        experiment.save(update_fields=["status", "started_at"])
        transaction.on_commit(clear_serving_cache)
    return experiment


# --- placements and their layers -----------------------------------------------------------

class PlacementError(ExperimentError):
    pass


def placement_get(key: str) -> Placement:
    try:
        return Placement.objects.get(key=key)
    except Placement.DoesNotExist:
        known = ", ".join(Placement.objects.values_list("key", flat=True)) or "(none)"
        raise PlacementError(f"unknown placement {key!r}; choose one of {known}") from None


def placement_create(*, key: str, name: str = "", default_model: EmbeddingModel | None = None) -> Placement:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,50}", key):
        raise PlacementError(f"a placement key is 1-50 letters, digits, '_' or '-', got {key!r}")
    if Placement.objects.filter(key=key).exists():
        raise PlacementError(f"placement {key!r} exists already")
    placement = Placement.objects.create(key=key, name=name or key, default_model=default_model)
    transaction.on_commit(clear_serving_cache)
    return placement


def placement_default_model(placement: Placement) -> EmbeddingModel | None:
    """What serves the placement's unclaimed requests: its default model, else the active baseline arm."""
    if placement.default_model_id is not None:
        return placement.default_model
    return EmbeddingModel.objects.filter(active_for_arm=EmbeddingModel.Kind.BASELINE).first()


def held_ranges(experiment: Experiment) -> list[BucketRange]:
    return [BucketRange(start, end) for start, end in BucketAllocation.objects.filter(
        experiment=experiment, released_at__isnull=True).values_list("start", "end")]


def layer_taken(placement_key: str) -> list[BucketRange]:
    """The buckets held now in the placement's layer (running and paused experiments, holdouts)."""
    return [BucketRange(start, end) for start, end in BucketAllocation.objects.filter(
        placement_id=placement_key, released_at__isnull=True).values_list("start", "end")]


def layer_free_buckets(placement_key: str) -> int:
    return free_count(layer_taken(placement_key))


def _allocate_buckets(experiment: Experiment) -> list[BucketRange]:
    """Give the experiment its share of the free buckets (under the placement's row lock: starts serialise)."""
    Placement.objects.select_for_update().get(key=experiment.placement_id)
    size = buckets_for_share(float(experiment.traffic_fraction))
    if size == 0:
        raise ExperimentError(f"experiment {experiment.name!r} has a traffic share of 0: it would reach nobody")
    try:
        ranges = allocate(layer_taken(experiment.placement_id), size)
    except OverAllocationError as error:
        raise ExperimentError(f"cannot start {experiment.name!r} on placement {experiment.placement_id!r}: "
                              f"{error}; lower its traffic share or stop another experiment there") from error
    now = timezone.now()
    BucketAllocation.objects.bulk_create(
        BucketAllocation(placement_id=experiment.placement_id, experiment=experiment, start=r.start, end=r.end,
                         allocated_at=now) for r in ranges)
    return ranges


def _release_buckets(experiment: Experiment) -> None:
    BucketAllocation.objects.filter(experiment=experiment, released_at__isnull=True).update(
        released_at=timezone.now())


def describe_buckets(experiment: Experiment) -> str:
    return describe(held_ranges(experiment))


def experiment_pause(*, experiment: Experiment) -> Experiment:
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status != Experiment.Status.RUNNING:
            raise ExperimentError(f"only a running experiment can pause; {experiment.name!r} is {experiment.status}")
        experiment.status = Experiment.Status.PAUSED
        experiment.save(update_fields=["status"])
        transaction.on_commit(clear_serving_cache)
    return experiment


def experiment_stop(*, experiment: Experiment) -> Experiment:
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status in (Experiment.Status.STOPPED, Experiment.Status.ARCHIVED):
            return experiment  # already over; stopping an archived one must not bring it back to the list
        experiment.status = Experiment.Status.STOPPED
        experiment.stopped_at = timezone.now()
        experiment.save(update_fields=["status", "stopped_at"])
        _release_buckets(experiment)
        transaction.on_commit(clear_serving_cache)
    return experiment


def experiment_archive(*, experiment: Experiment) -> Experiment:
    """Put a stopped experiment away: its events and results stay, the admin list hides it by default."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status == Experiment.Status.ARCHIVED:
            return experiment
        if experiment.status != Experiment.Status.STOPPED:
            raise ExperimentError(f"only a stopped experiment can be archived; {experiment.name!r} is "
                                  f"{experiment.status} (stop it first)")
        experiment.status = Experiment.Status.ARCHIVED
        experiment.save(update_fields=["status"])
    return experiment


def experiment_delete(*, experiment: Experiment) -> None:
    """Delete a draft that never started; refused for any experiment that ran (archive it instead)."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.is_locked:
            raise ExperimentError(
                f"experiment {experiment.name!r} is {experiment.status} and has run: it cannot be deleted (its "
                "assignments and events would be orphaned); stop it, then archive it"
            )
        experiment.delete()


def resolve_embedding_model(ref: str) -> EmbeddingModel:
    """An embedding model by arm name (the model active for that arm), else by id, name or name:version."""
    ref = ref.strip()
    active = EmbeddingModel.objects.filter(active_for_arm=ref).first()
    if active is not None:
        return active
    try:
        return embedding_model_get(ref)
    except ModelNotFoundError as error:
        raise ExperimentError(f"no embedding model with id, arm or name {ref!r}: {error}") from error
