"""The one vector search: HNSW indexes, the KNN SQL and its session tuning, for serving and text search alike.

Embedding models differ in dimension, so ``TrackEmbedding.embedding`` is an untyped
``vector``; each model has a partial HNSW index over ``embedding::vector(dim)`` restricted
to its rows (``typed_embedding`` is the only place that writes that expression), and every
query casts the same way so that PostgreSQL picks that index. Models wider than HNSW's
2,000 dimensions are stored without an index and searched exactly by the same SQL.

Every KNN runs with one session policy: ``hnsw.ef_search = VECTOR_EF_SEARCH`` (setting,
default 40) and ``hnsw.iterative_scan = relaxed_order``, so filtered-out rows (the seed,
``exclude``) never starve the result and k may exceed ef_search. bench/serve_load.py,
100k clustered 256-d vectors, seed + 20 ids excluded: recall@10 0.97-0.99 at ef 20,
0.995-1.0 at 40.

The serving hot path adds its outbox row as a data-modifying CTE between ``knn_ctes`` and
``NEIGHBOURS_SELECT`` (``experiments.serving``): one statement, one round trip.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection

from recommender.models import EmbeddingModel, Track, TrackEmbedding

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EMBEDDINGS = TrackEmbedding._meta.db_table


@dataclass(frozen=True)
class VectorSpace:
    """An embedding model as the KNN needs it."""

    model_id: int
    dim: int
    label: str

    @classmethod
    def of(cls, model: EmbeddingModel) -> VectorSpace:
        return cls(model_id=model.pk, dim=int(model.dim), label=f"{model.name} v{model.version}")


def typed_embedding(dim: int, alias: str = "") -> str:
    """The SQL expression every index and query of a ``dim``-wide model uses (the partial index is on it)."""
    return f"{alias}{'.' if alias else ''}embedding::vector({int(dim)})"


# --- indexes --------------------------------------------------------------------------------

def hnsw_index_name(model_id: int) -> str:
    return f"trackembedding_hnsw_model_{model_id}"


def create_hnsw_index(model: EmbeddingModel, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """Build (or keep) the cosine HNSW index for one model's vectors."""
    name = hnsw_index_name(model.pk)
    with connection.cursor() as cursor:
        # Inside a transaction that just wrote the vectors, deferred FK checks block CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {EMBEDDINGS} USING hnsw "
            f"(({typed_embedding(model.dim)}) vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) WHERE model_id = {int(model.pk)}"
        )
    return name


def drop_hnsw_index(model: EmbeddingModel) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {hnsw_index_name(model.pk)}")


# --- session ---------------------------------------------------------------------------------

_tuned_connections: weakref.WeakSet = weakref.WeakSet()


def ef_search() -> int:
    return int(settings.VECTOR_EF_SEARCH)


def _session_settings() -> tuple[str, ...]:
    return (f"SET hnsw.ef_search = {ef_search()}",
            # Keep scanning the graph when filtered-out (seed / excluded) rows eat into ef_search.
            "SET hnsw.iterative_scan = relaxed_order")


def tune_session(cursor) -> None:
    """Apply the HNSW settings once per database session (each statement inside a transaction)."""
    raw = connection.connection
    if connection.in_atomic_block:
        for statement in _session_settings():
            cursor.execute(statement.replace("SET ", "SET LOCAL ", 1))
        return
    if raw in _tuned_connections:
        return
    for statement in _session_settings():
        cursor.execute(statement)
    _tuned_connections.add(raw)


def forget_session_tuning() -> None:
    """Tuned sessions re-apply the settings on their next KNN (after a change of VECTOR_EF_SEARCH)."""
    _tuned_connections.clear()


@contextmanager
def server_bound_cursor():
    """A psycopg cursor with server-side parameters on Django's connection, tuned for the KNN.

    Django's default client-side cursor renders every parameter into the SQL text, which
    costs more than the KNN itself for the id and uuid arrays of the serving hot path;
    server-side binding sends them apart and lets psycopg prepare the statement after a few runs.
    """
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        tune_session(cursor)
        yield cursor


# --- the KNN ----------------------------------------------------------------------------------

def knn_ctes(space: VectorSpace, k: int, by: str = "seed") -> str:
    """``WITH seed, near``: the k nearest rows as (track_id, distance), in no promised order.

    ``by="seed"``: around a track's own vector, parameter %(seed)s; ``by="vector"``: around a
    query vector, parameter %(vector)s (text ``[x,y,...]``). Both take %(exclude)s (an array
    literal of ids). The model id, its dimension and k are written into the SQL: with them as
    literals the partial HNSW index matches even in a generic plan, so a prepared statement is
    planned once per (model, k). A caller adds its own final SELECT (and, in serving, a
    data-modifying CTE) after it. Ranking (relaxed_order may return the LIMIT's rows slightly
    out of order) and the titles are left to Python (``neighbours_from_rows``): a window function
    and a join to the track table cost PostgreSQL a third of the KNN itself.
    """
    return "WITH " + knn_cte_pair(space, k, by)


def knn_cte_pair(space: VectorSpace, k: int, by: str = "seed", suffix: str = "") -> str:
    """The two CTEs of ``knn_ctes`` without the ``WITH``, named ``seed<suffix>`` and ``near<suffix>``.

    Several KNNs (one per model, sharing %(seed)s and %(exclude)s) then fit one statement:
    an interleaving experiment's page asks both of its models at once."""
    if suffix and not suffix.replace("_", "").isalnum():
        raise ValueError(f"knn_cte_pair: suffix must be letters, digits or _, got {suffix!r}")
    vec, near_vec = typed_embedding(space.dim), typed_embedding(space.dim, "e")
    model = int(space.model_id)
    if by == "seed":
        seed = f"SELECT {vec} AS v FROM {EMBEDDINGS} WHERE model_id = {model} AND track_id = %(seed)s"
    elif by == "vector":
        seed = f"SELECT %(vector)s::vector({int(space.dim)}) AS v"
    else:
        raise ValueError(f"knn_ctes: by must be 'seed' or 'vector', got {by!r}")
    return (
        f"seed{suffix} AS ({seed}), "
        f"near{suffix} AS (SELECT e.track_id, {near_vec} <=> (SELECT v FROM seed{suffix}) AS distance "
        f"FROM {EMBEDDINGS} e WHERE e.model_id = {model} AND e.track_id <> ALL(%(exclude)s::bigint[]) "
        f"ORDER BY {near_vec} <=> (SELECT v FROM seed{suffix}) LIMIT {int(k)})"
    )


# No seed vector -> every distance is NULL: nothing is returned (and nothing recorded).
NEIGHBOURS_SELECT = " SELECT track_id, distance FROM near WHERE distance IS NOT NULL"


def pg_array(values) -> str:
    """A PostgreSQL array literal: one text parameter is cheaper to send than a list psycopg adapts item by item."""
    return "{" + ",".join(map(str, values)) + "}"


def knn_params(seed_track_id: int, exclude: Sequence[int]) -> dict:
    return {"seed": int(seed_track_id), "exclude": pg_array([int(seed_track_id), *map(int, exclude)])}


def vector_params(vector: Sequence[float] | np.ndarray, exclude: Sequence[int] = ()) -> dict:
    values = np.asarray(vector, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("query vector holds NaN or infinity")
    return {"vector": "[" + ",".join(repr(float(x)) for x in values) + "]", "exclude": pg_array(map(int, exclude))}


@dataclass(frozen=True)
class Neighbour:
    track_id: int
    score: float  # cosine similarity, 1 - cosine distance
    title: str
    artist: str


class SeedNotIndexedError(LookupError):
    """The seed track has no vector in the model."""


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


def neighbours_from_rows(space: VectorSpace, rows: list, seed_track_id: int | None = None) -> list[Neighbour]:
    """(track_id, distance) rows -> neighbours ranked by (distance, track_id), the order the outbox records."""
    if not rows and seed_track_id is not None and not TrackEmbedding.objects.filter(
            model_id=space.model_id, track_id=seed_track_id).exists():
        raise SeedNotIndexedError(f"track {seed_track_id} has no vector in model {space.label}")
    ranked = sorted((float(distance), int(track_id)) for track_id, distance in rows)
    titles = track_titles.get([track_id for _, track_id in ranked])
    return [Neighbour(track_id, 1.0 - distance, *titles[track_id]) for distance, track_id in ranked]


def nearest_to_track(space: VectorSpace, seed_track_id: int, k: int, exclude: Sequence[int] = ()) -> list[Neighbour]:
    """The k tracks closest to the seed in one round trip, leaving out the seed and ``exclude``."""
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ctes(space, k) + NEIGHBOURS_SELECT, knn_params(seed_track_id, exclude))
        rows = cursor.fetchall()
    return neighbours_from_rows(space, rows, seed_track_id)


def nearest_to_vector(space: VectorSpace, vector: Sequence[float] | np.ndarray, k: int,
                      exclude: Sequence[int] = ()) -> list[Neighbour]:
    """The k tracks closest to a query vector (a text embedding, a user profile), leaving out ``exclude``."""
    with server_bound_cursor() as cursor:
        cursor.execute(knn_ctes(space, k, by="vector") + NEIGHBOURS_SELECT, vector_params(vector, exclude))
        rows = cursor.fetchall()
    return neighbours_from_rows(space, rows)


def explain_knn(space: VectorSpace, k: int, seed_track_id: int) -> str:
    """The plan of the KNN (tests and benches check that it uses the model's HNSW index)."""
    with server_bound_cursor() as cursor:
        cursor.execute("EXPLAIN " + knn_ctes(space, k) + NEIGHBOURS_SELECT, knn_params(seed_track_id, ()))
        return "\n".join(row[0] for row in cursor.fetchall())
