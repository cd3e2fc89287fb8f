"""Serving a recommendation: the placement's layer -> the user's variant -> the one KNN (``recommender.vector_search``).

Every page shown gets the KNN and the outbox row of the page in ONE statement
(``RECORD_RECOMMENDATION_CTE`` between the KNN's CTEs and its final SELECT): one round trip,
one transaction, and the HTTP answer goes out after the impressions are durable; the relay
and the worker (``experiments.events``) do the rest. A page served outside any experiment (no
experiment of the placement holds the user's bucket) is recorded without experiment and variant: it
counts in the user's all-traffic rollup (CUPED's pre-period) and its clicks and plays are accepted,
but no experiment's analysis sees it. A HEAD request records nothing.

A user whose layer bucket an *interleaving* experiment holds gets both variants' KNNs (same seed, same exclusions),
their team-draft merge (the SQL function ``experiments_team_draft``, with coins drawn in Python
from the request id by ``experiments.team_draft.coin_flips``) and the page with each item's team
(``RECORD_INTERLEAVED_CTE``: ``Page`` with its placement, and its outbox row), still in one statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone

from experiments.assignment import user_key
from experiments.events.ids import new_request_id
from experiments.events.outbox import RECORD_INTERLEAVED_CTE, RECORD_RECOMMENDATION_CTE
from experiments.models import DEFAULT_PLACEMENT
from experiments.selectors import ServingArm, ServingExperiment, serving_config
from experiments.team_draft import coin_flips, rounds_for
from recommender.vector_search import (
    NEIGHBOURS_SELECT,
    Neighbour,
    knn_cte_pair,
    knn_ctes,
    knn_params,
    nearest_to_track,
    neighbours_from_rows,
    server_bound_cursor,
    track_titles,
)

INTERLEAVED = "interleaved"  # the "variant" an interleaving experiment's user is shown


class NoArmAvailableError(LookupError):
    """Nothing to serve: no experiment holds the user and the placement has no default model (nor a baseline)."""


class UnknownPlacementError(ValueError):
    """The request names a placement the platform does not have (the API's 400)."""


@dataclass(frozen=True)
class Recommendation:
    request_id: uuid.UUID
    experiment_id: int | None  # None: no experiment of the placement holds the user's bucket
    experiment_name: str | None
    variant: str | None
    model_id: int
    model: str
    items: list[Neighbour]
    recorded: bool  # the page went to the outbox (every GET; in the analysis only when experiment_id is set)
    placement: str = DEFAULT_PLACEMENT
    teams: tuple[int, ...] | None = None  # interleaving: the team that drafted each item (1 = control's ranker)


def recommend(*, user_id: str, seed_track_id: int, k: int, exclude: Sequence[int] = (),
              record: bool = True, placement: str = DEFAULT_PLACEMENT) -> Recommendation:
    """The user's arm on the placement -> KNN around the seed -> the page shown, recorded (in an experiment or not).

    ``record=False`` (an HTTP HEAD: nothing is shown to anybody) computes the same answer and writes nothing."""
    config = serving_config()
    layer = config.placements.get(placement)
    if layer is None:
        raise UnknownPlacementError(
            f"unknown placement {placement!r}; choose one of {', '.join(sorted(config.placements)) or '(none)'}")
    assigned = layer.assign(user_id)
    arm: ServingArm | None = assigned.arm
    if arm is None:
        raise NoArmAvailableError(f"placement {placement!r} has no default model, no embedding model is active for "
                                  "the baseline arm, and no experiment holds this user")
    experiment = assigned.experiment
    if experiment is not None and experiment.interleaved:
        return _interleaved(experiment, user_id, seed_track_id, k, exclude, record, placement)
    variant = assigned.variant if record else None
    request_id = new_request_id()
    if not record:
        items = nearest_to_track(arm, seed_track_id, k, exclude)
    else:
        items = _nearest_recorded(arm, seed_track_id, k, exclude, request_id,
                                  experiment.experiment_id if variant is not None else None,
                                  variant.variant_id if variant is not None else None, user_id, placement)
    return Recommendation(
        request_id=request_id,
        experiment_id=experiment.experiment_id if variant is not None else None,
        experiment_name=experiment.name if variant is not None else None,
        variant=variant.key if variant is not None else None,
        model_id=arm.model_id, model=arm.label, items=items, recorded=record, placement=placement,
    )


def _nearest_recorded(arm: ServingArm, seed_track_id: int, k: int, exclude: Sequence[int], request_id: uuid.UUID,
                      experiment_id: int | None, variant_id: int | None, user_id: str,
                      placement: str) -> list[Neighbour]:
    """The KNN and the outbox row of what was shown, in ONE statement (one round trip, its own transaction)."""
    params = knn_params(seed_track_id, exclude)
    params.update({
        "request": request_id, "experiment": experiment_id, "variant": variant_id, "user_key": user_key(user_id),
        "user_id": user_id, "placement": placement, "now": timezone.now(),
    })
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ctes(arm, k) + RECORD_RECOMMENDATION_CTE + NEIGHBOURS_SELECT, params)
        rows = cursor.fetchall()
    return neighbours_from_rows(arm, rows, seed_track_id)


def interleaving_sql(a: ServingArm, b: ServingArm, k: int, record: bool) -> str:
    """Both KNNs, their team draft and (``record``) the page with its outbox row: ONE statement, rows (track,
    distance, team).

    Each list is ranked by (distance, track id), as ``neighbours_from_rows`` ranks an A/B page."""
    lists = (
        ", lists AS (SELECT "
        "ARRAY(SELECT track_id FROM near_a WHERE distance IS NOT NULL ORDER BY distance, track_id) AS a_ids, "
        "ARRAY(SELECT distance FROM near_a WHERE distance IS NOT NULL ORDER BY distance, track_id) AS a_dist, "
        "ARRAY(SELECT track_id FROM near_b WHERE distance IS NOT NULL ORDER BY distance, track_id) AS b_ids, "
        "ARRAY(SELECT distance FROM near_b WHERE distance IS NOT NULL ORDER BY distance, track_id) AS b_dist)"
        ", page AS (SELECT d.pos, d.team, "
        "CASE WHEN d.team = 1 THEN l.a_ids[d.rank] ELSE l.b_ids[d.rank] END AS track_id, "
        "CASE WHEN d.team = 1 THEN l.a_dist[d.rank] ELSE l.b_dist[d.rank] END AS distance "
        f"FROM lists l, experiments_team_draft(l.a_ids, l.b_ids, %(coins)s::boolean[], {int(k)}) d)"
    )
    return ("WITH " + knn_cte_pair(a, k, suffix="_a") + ", " + knn_cte_pair(b, k, suffix="_b") + lists
            + (RECORD_INTERLEAVED_CTE if record else "") + " SELECT track_id, distance, team FROM page ORDER BY pos")


def _interleaved(experiment: ServingExperiment, user_id: str, seed_track_id: int, k: int, exclude: Sequence[int],
                 record: bool, placement: str) -> Recommendation:
    """Team draft of the two variants' top-k; the page is recorded with the control variant and each item's team."""
    team_a, team_b = experiment.teams()
    request_id = new_request_id()
    params = knn_params(seed_track_id, exclude)
    # an array literal: one text parameter, cheaper than a list psycopg adapts item by item (as ``pg_array``)
    params["coins"] = "{" + ",".join("t" if a_first else "f" for a_first in coin_flips(request_id, rounds_for(k))) + "}"
    if record:
        params.update({"request": request_id, "experiment": experiment.experiment_id, "variant": team_a.variant_id,
                       "user_key": user_key(user_id), "user_id": user_id, "placement": placement,
                       "now": timezone.now()})
    with server_bound_cursor() as cursor:
        cursor.execute(interleaving_sql(team_a.arm, team_b.arm, k, record), params)
        rows = cursor.fetchall()
    if not rows:
        neighbours_from_rows(team_a.arm, rows, seed_track_id)  # raises SeedNotIndexedError when the seed has no vector
    titles = track_titles.get([int(track_id) for track_id, _, _ in rows])
    items = [Neighbour(int(track_id), 1.0 - float(distance), *titles[int(track_id)]) for track_id, distance, _ in rows]
    return Recommendation(
        request_id=request_id, experiment_id=experiment.experiment_id if record else None,
        experiment_name=experiment.name if record else None, variant=INTERLEAVED if record else None,
        model_id=team_a.arm.model_id, model=f"{team_a.arm.label} + {team_b.arm.label}", items=items,
        recorded=record, placement=placement, teams=tuple(int(team) for _, _, team in rows),
    )
