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
    """Forget the serving configuration and the cached track titles (lifecycle changes, tests)."""
    global _config
    _config = None
    track_titles.clear()


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


def knn_ctes(arm: ServingArm, k: int) -> str:
    """``WITH seed, near``: the k nearest rows to the seed as (track_id, distance), in no promised order.

    Parameters: %(seed)s and %(exclude)s (an array literal of ids). The model id, its
    dimension and k are written into the SQL: with them as literals the partial HNSW index
    matches even in a generic plan, so a prepared statement is planned once per (arm, k)
    instead of on every execution. A caller adds its own final SELECT (and, in the serving
    service, a data-modifying CTE) after it. Ranking (relaxed_order may return the LIMIT's
    rows slightly out of order) and the titles are left to Python (``neighbours_from_rows``):
    a window function and a join to the track table cost PostgreSQL a third of the KNN itself.
    """
    table = TrackEmbedding._meta.db_table
    vec = f"embedding::vector({int(arm.dim)})"  # the partial HNSW index is on this expression
    model = int(arm.model_id)
    return (
        f"WITH seed AS (SELECT {vec} AS v FROM {table} WHERE model_id = {model} AND track_id = %(seed)s), "
        f"near AS (SELECT e.track_id, e.{vec} <=> (SELECT v FROM seed) AS distance FROM {table} e "
        f"WHERE e.model_id = {model} AND e.track_id <> ALL(%(exclude)s::bigint[]) "
        f"ORDER BY e.{vec} <=> (SELECT v FROM seed) LIMIT {int(k)})"
    )


# No seed vector -> every distance is NULL: nothing is returned (and nothing recorded).
NEIGHBOURS_SELECT = " SELECT track_id, distance FROM near WHERE distance IS NOT NULL"


class TrackTitles:
    """(title, artist) of tracks, cached in-process: read for every item served, changed almost never.

    Filled with the whole catalog in one query when it has at most ``max_entries`` tracks
    (100k tracks: 0.43 s and 25 MiB per process, measured), then misses (new tracks, a bigger
    catalog) are fetched in one query per request. Refilled every ``ttl_s`` seconds, so an
    edited title shows within that time: in a background thread while the old titles keep
    serving, so no request waits for the refill (only the very first fill is inline).
    """

    def __init__(self, ttl_s: float = 600.0, max_entries: int = 500_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._titles: dict[int, tuple[str, str]] = {}
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self, track_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        now = time.monotonic()
        if now > self._expires:
            with self._lock:
                if now > self._expires:
                    self._expires = now + self.ttl_s
                    if self._titles:
                        threading.Thread(target=self._refill, name="track-titles-refill", daemon=True).start()
                    else:
                        self._titles = self._whole_catalog()
        titles = self._titles
        missing = [t for t in track_ids if t not in titles]
        if missing:
            found = {row[0]: (row[1], row[2])
                     for row in Track.objects.filter(pk__in=missing).values_list("pk", "title", "artist")}
            with self._lock:
                if len(self._titles) + len(found) > self.max_entries:
                    self._titles = {}
                self._titles.update(found)
            titles = {**titles, **found}
        return {t: titles.get(t, ("", "")) for t in track_ids}

    def _whole_catalog(self) -> dict[int, tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [Track._meta.db_table])
            estimate = cursor.fetchone()[0]
        if estimate > self.max_entries:
            return {}
        return {pk: (title, artist) for pk, title, artist in Track.objects.values_list("pk", "title", "artist")}

    def _refill(self) -> None:
        try:
            titles = self._whole_catalog()
            with self._lock:
                self._titles = titles
        finally:
            connection.close()  # this thread's own connection

    def clear(self) -> None:
        with self._lock:
            self._titles, self._expires = {}, 0.0


track_titles = TrackTitles()


class SeedNotIndexedError(LookupError):
    """The seed track has no vector in the arm's embedding model."""


def pg_array(values) -> str:
    """A PostgreSQL array literal: one text parameter is cheaper to send than a list psycopg adapts item by item."""
    return "{" + ",".join(map(str, values)) + "}"


def knn_params(seed_track_id: int, exclude: Sequence[int]) -> dict:
    return {"seed": int(seed_track_id), "exclude": pg_array([int(seed_track_id), *map(int, exclude)])}


def neighbours_from_rows(arm: ServingArm, seed_track_id: int, rows: list) -> list[Neighbour]:
    """(track_id, distance) rows -> neighbours ranked by (distance, track_id), the order the outbox records."""
    if not rows and not TrackEmbedding.objects.filter(model_id=arm.model_id, track_id=seed_track_id).exists():
        raise SeedNotIndexedError(f"track {seed_track_id} has no vector in model {arm.label}")
    ranked = sorted((float(distance), int(track_id)) for track_id, distance in rows)
    titles = track_titles.get([track_id for _, track_id in ranked])
    return [Neighbour(track_id, 1.0 - distance, *titles[track_id]) for distance, track_id in ranked]


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
        cursor.execute(knn_ctes(arm, k) + NEIGHBOURS_SELECT, knn_params(seed_track_id, exclude))
        rows = cursor.fetchall()
    return neighbours_from_rows(arm, seed_track_id, rows)
