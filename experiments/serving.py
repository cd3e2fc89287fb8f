"""Serving a recommendation: the user's variant -> the one KNN (``recommender.vector_search``) -> the answer.

Every page shown gets the KNN and the outbox row of the page in ONE statement
(``RECORD_RECOMMENDATION_CTE`` between the KNN's CTEs and its final SELECT): one round trip,
one transaction, and the HTTP answer goes out after the impressions are durable; the relay
and the worker (``experiments.events``) do the rest. A page served outside any experiment (none
running, or the user outside its traffic fraction) is recorded without experiment and variant: it
counts in the user's all-traffic rollup (CUPED's pre-period) and its clicks and plays are accepted,
but no experiment's analysis sees it. A HEAD request records nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone

from experiments.assignment import assign_variant, user_key
from experiments.events.ids import new_request_id
from experiments.events.outbox import RECORD_RECOMMENDATION_CTE
from experiments.selectors import ServingArm, serving_config
from recommender.vector_search import (
    NEIGHBOURS_SELECT,
    Neighbour,
    knn_ctes,
    knn_params,
    nearest_to_track,
    neighbours_from_rows,
    server_bound_cursor,
)


class NoArmAvailableError(LookupError):
    """Nothing to serve: no experiment runs and no model is active for the baseline arm."""


@dataclass(frozen=True)
class Recommendation:
    request_id: uuid.UUID
    experiment_id: int | None  # None: no experiment runs, or the user is outside its traffic fraction
    experiment_name: str | None
    variant: str | None
    model_id: int
    model: str
    items: list[Neighbour]
    recorded: bool  # the page went to the outbox (every GET; in the analysis only when experiment_id is set)


def recommend(*, user_id: str, seed_track_id: int, k: int, exclude: Sequence[int] = (),
              record: bool = True) -> Recommendation:
    """The user's arm -> KNN around the seed -> the page shown, recorded (in the experiment or not).

    ``record=False`` (an HTTP HEAD: nothing is shown to anybody) computes the same answer and writes nothing."""
    config = serving_config()
    experiment = config.experiment
    variant = None
    if experiment is not None:
        assigned = assign_variant(experiment.salt, user_id, experiment.arms, experiment.traffic_fraction)
        serving_variant = experiment.variants[assigned.variant_key]
        arm: ServingArm = serving_variant.arm
        if assigned.in_experiment and record:
            variant = serving_variant
    elif config.fallback is not None:
        arm = config.fallback
    else:
        raise NoArmAvailableError("no experiment is running and no embedding model is active for the baseline arm")
    request_id = new_request_id()
    if not record:
        items = nearest_to_track(arm, seed_track_id, k, exclude)
    else:
        items = _nearest_recorded(arm, seed_track_id, k, exclude, request_id,
                                  experiment.experiment_id if variant is not None else None,
                                  variant.variant_id if variant is not None else None, user_id)
    return Recommendation(
        request_id=request_id,
        experiment_id=experiment.experiment_id if variant is not None else None,
        experiment_name=experiment.name if variant is not None else None,
        variant=variant.key if variant is not None else None,
        model_id=arm.model_id, model=arm.label, items=items, recorded=record,
    )


def _nearest_recorded(arm: ServingArm, seed_track_id: int, k: int, exclude: Sequence[int], request_id: uuid.UUID,
                      experiment_id: int | None, variant_id: int | None, user_id: str) -> list[Neighbour]:
    """The KNN and the outbox row of what was shown, in ONE statement (one round trip, its own transaction)."""
    params = knn_params(seed_track_id, exclude)
    params.update({
        "request": request_id, "experiment": experiment_id, "variant": variant_id, "user_key": user_key(user_id),
        "user_id": user_id, "now": timezone.now(),
    })
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ctes(arm, k) + RECORD_RECOMMENDATION_CTE + NEIGHBOURS_SELECT, params)
        rows = cursor.fetchall()
    return neighbours_from_rows(arm, rows, seed_track_id)


