"""Reads of the experiments app on the serving hot path: which arms serve, and the KNN.

The serving configuration (the running experiment, its variants and their embedding
models, or the baseline arm when nothing runs) changes a few times a day but is read on
every request, so it is cached in-process for ``SERVING_CACHE_TTL_S`` seconds; the
lifecycle services clear the cache of their own process at once.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.db import connection

from experiments.assignment import ArmSpec
from experiments.models import Experiment, Variant
from recommender.models import EmbeddingModel, Track, TrackEmbedding

SERVING_CACHE_TTL_S = 2.0
# bench/serve_load.py, 100k clustered synthetic 256-d vectors, seed + 20 ids excluded: recall@10 0.97-0.99 at
# ef_search 20, 0.995-1.0 at 40 (FACTS.md: 0.95 at 40 on white noise). The iterative scan still returns k > ef.
HNSW_EF_SEARCH = int(os.environ.get("EXPERIMENTS_HNSW_EF_SEARCH", "40"))
BASELINE_ARM = EmbeddingModel.Kind.BASELINE


@dataclass(frozen=True)
class ServingArm:
    """An embedding model as the KNN needs it."""

    model_id: int
    dim: int
    label: str


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


@dataclass(frozen=True)
class ServingConfig:
    experiment: ServingExperiment | None
    fallback: ServingArm | None  # the active baseline arm, served when no experiment runs


def _arm(model: EmbeddingModel) -> ServingArm:
    return ServingArm(model_id=model.pk, dim=int(model.dim), label=f"{model.name} v{model.version}")


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
    global _config
    _config = None


# --- KNN --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Neighbour:
    track_id: int
    score: float  # cosine similarity, 1 - cosine distance
    title: str
    artist: str


_tuned_connections: weakref.WeakSet = weakref.WeakSet()
_SESSION_SETTINGS = (
    f"SET hnsw.ef_search = {HNSW_EF_SEARCH}",
    # Keep scanning the graph when filtered-out (seed / excluded) rows eat into ef_search.
    "SET hnsw.iterative_scan = relaxed_order",
)


def tune_session(cursor) -> None:
    """Apply the serving HNSW settings once per database session (each statement inside a transaction)."""
    raw = connection.connection
    if connection.in_atomic_block:
        for statement in _SESSION_SETTINGS:
            cursor.execute(statement.replace("SET ", "SET LOCAL ", 1))
        return
    if raw in _tuned_connections:
        return
    for statement in _SESSION_SETTINGS:
        cursor.execute(statement)
    _tuned_connections.add(raw)


def knn_ranked_ctes(arm: ServingArm, k: int) -> str:
    """``WITH seed, near, ranked``: the k nearest rows to the seed, numbered 1..n by distance.

    Parameters: %(seed)s and %(exclude)s (an array literal of ids). The model id, its
    dimension and k are written into the SQL: with them as literals the partial HNSW index
    matches even in a generic plan, so a prepared statement is planned once per (arm, k)
    instead of on every execution. A caller adds its own final SELECT (and, in the serving
    service, a data-modifying CTE) after it.
    """
    table = TrackEmbedding._meta.db_table
    vec = f"embedding::vector({int(arm.dim)})"  # the partial HNSW index is on this expression
    model = int(arm.model_id)
    # relaxed_order may return the LIMIT's rows slightly out of order: ``ranked`` numbers them by distance.
    return (
        f"WITH seed AS (SELECT {vec} AS v FROM {table} WHERE model_id = {model} AND track_id = %(seed)s), "
        f"near AS (SELECT e.track_id, e.{vec} <=> (SELECT v FROM seed) AS distance FROM {table} e "
        f"WHERE e.model_id = {model} AND e.track_id <> ALL(%(exclude)s::bigint[]) "
        f"ORDER BY e.{vec} <=> (SELECT v FROM seed) LIMIT {int(k)}), "
        f"ranked AS (SELECT track_id, distance, row_number() OVER (ORDER BY distance, track_id) AS position "
        f"FROM near WHERE distance IS NOT NULL)"
    )


NEIGHBOURS_SELECT = (
    f" SELECT r.track_id, 1 - r.distance, t.title, t.artist FROM ranked r "
    f"JOIN {Track._meta.db_table} t ON t.id = r.track_id ORDER BY r.position"
)


class SeedNotIndexedError(LookupError):
    """The seed track has no vector in the arm's embedding model."""


def pg_array(values) -> str:
    """A PostgreSQL array literal: one text parameter is cheaper to send than a list psycopg adapts item by item."""
    return "{" + ",".join(map(str, values)) + "}"


def knn_params(seed_track_id: int, exclude: Sequence[int]) -> dict:
    return {"seed": int(seed_track_id), "exclude": pg_array([int(seed_track_id), *map(int, exclude)])}


def neighbours_from_rows(arm: ServingArm, seed_track_id: int, rows: list) -> list[Neighbour]:
    if not rows and not TrackEmbedding.objects.filter(model_id=arm.model_id, track_id=seed_track_id).exists():
        raise SeedNotIndexedError(f"track {seed_track_id} has no vector in model {arm.label}")
    return [Neighbour(int(r[0]), float(r[1]), r[2], r[3]) for r in rows]


@contextmanager
def server_bound_cursor():
    """A psycopg cursor with server-side parameters on Django's connection, tuned for serving.

    Django's default client-side cursor renders every parameter into the SQL text, which
    costs more than the KNN itself for the id and uuid arrays of this hot path; server-side
    binding sends them apart and lets psycopg prepare the statement after a few runs.
    """
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        tune_session(cursor)
        yield cursor


def nearest_to_track(arm: ServingArm, seed_track_id: int, k: int, exclude: Sequence[int] = ()) -> list[Neighbour]:
    """The k tracks closest to the seed in one round trip, leaving out the seed and ``exclude``."""
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ranked_ctes(arm, k) + NEIGHBOURS_SELECT, knn_params(seed_track_id, exclude))
        rows = cursor.fetchall()
    return neighbours_from_rows(arm, seed_track_id, rows)
