"""Experiments over time: holdouts, shipping a winner (a model made a placement's default), scheduled starts
and stops. Built on the lifecycle services (``experiments.services``), which know nothing of these.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from experiments.models import Experiment, Launch, Placement
from experiments.selectors import HOLDOUT_LAUNCHED_VARIANT, clear_serving_cache
from experiments.services import (
    ExperimentError,
    VariantSpec,
    experiment_start,
    experiment_stop,
    placement_default_model,
    placement_get,
    variants_set,
)
from recommender.models import EmbeddingModel

logger = logging.getLogger(__name__)


# --- holdouts ---------------------------------------------------------------------------

HOLDOUT_VARIANT = "holdout"


def holdout_start(*, placement: str, share: float, name: str = "") -> Experiment:
    """Hold ``share`` of the placement's users on the model it serves now, whatever ships after.

    The holdout is an experiment of the placement's layer taking 2 x ``share`` of its buckets: half stay on
    today's default ("holdout", the control), half are a measured sample of everyone else, served whatever the
    placement's default is at each request ("launched"). Its results page compares the two on every metric
    (what all launches together bought), and no experiment ever reaches its users."""
    if not 0.0 < share <= 0.25:
        raise ExperimentError(f"a holdout share lies in (0, 0.25] (it takes twice that of the layer), got {share}")
    where = placement_get(placement)
    model = placement_default_model(where)
    if model is None:
        raise ExperimentError(f"placement {placement!r} has no default model to hold users on")
    if Experiment.objects.filter(placement_id=placement, kind=Experiment.Kind.HOLDOUT,
                                 status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED]).exists():
        raise ExperimentError(f"placement {placement!r} already has a holdout; stop it first")
    with transaction.atomic():
        experiment = Experiment.objects.create(
            name=name or f"holdout {placement} {timezone.now():%Y-%m-%d %H:%M}", kind=Experiment.Kind.HOLDOUT,
            placement_id=placement, traffic_fraction=2 * share,
            hypothesis=f"{share:.1%} of {placement} kept on {model} against an equal share of everyone else")
        variants_set(experiment=experiment, variants=[
            VariantSpec(HOLDOUT_VARIANT, model.pk, 50, True, f"held on {model}"),
            VariantSpec(HOLDOUT_LAUNCHED_VARIANT, model.pk, 50, False, "whatever the placement ships"),
        ])
        return experiment_start(experiment=experiment)


# --- shipping the winner -----------------------------------------------------------------

def experiment_ship(*, experiment: Experiment, variant_key: str, by: str = "", verdict: str = "") -> Launch:
    """Make a stopped experiment's variant's model its placement's default, and record who, when, from what."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.kind == Experiment.Kind.HOLDOUT:
            raise ExperimentError(f"{experiment.name!r} is a holdout: there is nothing to ship from it")
        if experiment.status not in (Experiment.Status.STOPPED, Experiment.Status.ARCHIVED):
            raise ExperimentError(f"only a stopped experiment ships; {experiment.name!r} is {experiment.status}")
        variant = experiment.variants.select_related("embedding_model").filter(key=variant_key).first()
        if variant is None:
            keys = ", ".join(experiment.variants.values_list("key", flat=True))
            raise ExperimentError(f"{experiment.name!r} has no variant {variant_key!r} (it has {keys})")
        if variant.embedding_model.indexed_at is None:
            raise ExperimentError(f"{variant.embedding_model} is not indexed: it cannot serve")
        placement = Placement.objects.select_for_update().get(key=experiment.placement_id)
        previous = placement_default_model(placement)
        placement.default_model = variant.embedding_model
        placement.save(update_fields=["default_model"])
        launch = Launch.objects.create(
            placement=placement, model=variant.embedding_model, previous_model=previous, experiment=experiment,
            variant_key=variant.key, verdict=verdict, launched_by=by, launched_at=timezone.now())
        transaction.on_commit(clear_serving_cache)
    return launch


def placement_set_default(*, placement: Placement, model: EmbeddingModel, by: str = "") -> Launch:
    """Make ``model`` the placement's default by hand (no experiment); recorded like a shipped winner."""
    if model.indexed_at is None:
        raise ExperimentError(f"{model} is not indexed: it cannot serve")
    with transaction.atomic():
        placement = Placement.objects.select_for_update().get(pk=placement.pk)
        previous = placement_default_model(placement)
        placement.default_model = model
        placement.save(update_fields=["default_model"])
        launch = Launch.objects.create(placement=placement, model=model, previous_model=previous, launched_by=by,
                                       verdict="set by hand", launched_at=timezone.now())
        transaction.on_commit(clear_serving_cache)
    return launch


# --- schedules ---------------------------------------------------------------------------

def experiment_schedules_apply(*, now: datetime | None = None) -> list[str]:
    """Start drafts whose start time has come and stop experiments whose stop time has come; what was done.

    Run by the worker's schedule clock every ``EXPERIMENTS_SCHEDULE_POLL_S`` seconds (any number of workers:
    each transition locks its row and is idempotent). A start that cannot happen (e.g. not enough free
    buckets) is logged and tried again on the next tick."""
    now = now or timezone.now()
    done = []
    due_stop = Experiment.objects.filter(scheduled_stop_at__lte=now,
                                         status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED])
    for experiment in due_stop:
        experiment_stop(experiment=experiment)
        done.append(f"stopped {experiment.name!r} (scheduled {experiment.scheduled_stop_at:%Y-%m-%d %H:%M})")
    due_start = Experiment.objects.filter(scheduled_start_at__lte=now, status=Experiment.Status.DRAFT).exclude(
        scheduled_stop_at__lte=now).order_by("scheduled_start_at", "pk")
    for experiment in due_start:
        try:
            experiment_start(experiment=experiment)
        except ExperimentError as error:
            logger.warning("scheduled start of %r not possible yet: %s", experiment.name, error)
            done.append(f"could not start {experiment.name!r}: {error}")
        else:
            done.append(f"started {experiment.name!r} (scheduled {experiment.scheduled_start_at:%Y-%m-%d %H:%M})")
    return done
