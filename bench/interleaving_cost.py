"""In-process cost of an interleaved recommendation against an A/B one (``experiments.serving.recommend``).

    .venv/bin/python bench/interleaving_cost.py                   # 20k tracks x 2 models, 256-d (built once, kept)
    .venv/bin/python bench/interleaving_cost.py --requests 2000 --rounds 6 --tracks 100000

In its own database (``bench_interleaving``): two embedding models of synthetic clustered vectors
(each with its HNSW index), an A/B experiment and an interleaving experiment over the same two
models. Rounds alternate: the A/B experiment runs, then the interleaving one, ``--requests``
``recommend()`` calls each (random user, random seed track, k = 10, recorded to the outbox, as
the API does), timed one by one with ``time.perf_counter``. Every round is printed (median, p90,
p99 in ms) and the difference of medians of each adjacent pair: this VM's speed swings by a third
between minutes, so only figures of the same minutes are compared. No HTTP, no worker: the outbox
rows written are deleted at the end.

Then PostgreSQL's own timing of the three statements (``EXPLAIN ANALYZE``, ``--explain`` statements
each, medians of execution and planning time): one KNN, the two KNNs alone, and the interleaved
statement (two KNNs + team draft, without the outbox write). On a loaded machine the wall-clock
rounds mostly measure the queue for the cores; these say what the statement itself costs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
DB_NAME = os.environ["DJANGO_DB_NAME"] = os.environ.get("BENCH_DB_NAME", "bench_interleaving")

from benchdb import reset_synthetic_tracks, setup_django_on  # noqa: E402

MODEL_NAMES = ("bench-il-baseline", "bench-il-crossmusim")


def ensure_models(n_tracks: int, dim: int) -> list:

    import numpy as np

    from recommender.models import EmbeddingModel, Track
    from recommender.services.embeddings import track_embeddings_write

    models = [EmbeddingModel.objects.filter(name=name).first() for name in MODEL_NAMES]
    if all(m is not None and m.indexed_at and m.dim == dim for m in models) and Track.objects.count() == n_tracks:
        return models
    print(f"building {n_tracks:,} tracks x 2 models of {dim}-d vectors (kept for later runs)...", flush=True)
    track_ids = reset_synthetic_tracks(n_tracks, "bench-il-")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(1000, dim)).astype(np.float32)
    for name, kind in zip(MODEL_NAMES, ("baseline", "crossmusim"), strict=True):
        model = EmbeddingModel.objects.create(name=name, kind=kind, dim=dim)
        labels = rng.integers(0, len(centers), size=n_tracks)
        matrix = (centers[labels] + 0.7 * rng.normal(size=(n_tracks, dim))).astype(np.float32)
        report = track_embeddings_write(model=model, track_ids=track_ids, vectors=matrix)
        print(f"  {name}: wrote in {report.write_seconds:.0f} s, HNSW index in {report.index_seconds:.0f} s",
              flush=True)
    return [EmbeddingModel.objects.get(name=name) for name in MODEL_NAMES]


# Each kind runs on a placement of its own, holding every bucket of its layer: a paused experiment keeps its buckets,
# so the two could not take turns on one placement.
PLACEMENTS = {"ab": "bench_ab", "interleaving": "bench_interleaving"}


def experiments(models) -> dict:
    from experiments.models import Experiment, Placement
    from experiments.services import VariantSpec, experiment_create, experiment_stop, placement_create

    for running in Experiment.objects.filter(status__in=["running", "paused"]):
        experiment_stop(experiment=running)
    for key in PLACEMENTS.values():
        if not Placement.objects.filter(key=key).exists():
            placement_create(key=key, default_model=models[0])
    stamp = f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
    variants = [VariantSpec("control", models[0].pk, 50, True), VariantSpec("treatment", models[1].pk, 50)]
    return {kind: experiment_create(name=f"bench-{kind}-{stamp}", variants=variants, kind=kind,
                                    placement=PLACEMENTS[kind])
            for kind in ("ab", "interleaving")}


def run_round(track_ids: list[int], requests: int, rng: random.Random,
              placement: str) -> tuple[list[float], float]:
    """Wall-clock ms of each call, and this process's CPU ms per call (the Python side, whatever the load)."""
    from experiments.serving import recommend

    timings = []
    cpu_started = time.process_time()
    for _ in range(requests):
        user, seed = f"user-{rng.randrange(100_000)}", rng.choice(track_ids)
        started = time.perf_counter()
        result = recommend(user_id=user, seed_track_id=seed, k=10, placement=placement)
        timings.append((time.perf_counter() - started) * 1000)
        assert result.recorded and len(result.items) == 10
    return timings, (time.process_time() - cpu_started) * 1000 / requests


def server_timing(models, track_ids: list[int], statements: int, rng: random.Random) -> None:
    import uuid

    from experiments.serving import interleaving_sql
    from experiments.team_draft import coin_flips, rounds_for
    from recommender.vector_search import (
        NEIGHBOURS_SELECT,
        VectorSpace,
        knn_cte_pair,
        knn_ctes,
        knn_params,
        server_bound_cursor,
    )

    a, b = VectorSpace.of(models[0]), VectorSpace.of(models[1])
    two = ("WITH " + knn_cte_pair(a, 10, suffix="_a") + ", " + knn_cte_pair(b, 10, suffix="_b")
           + " SELECT track_id, distance FROM near_a UNION ALL SELECT track_id, distance FROM near_b")
    cases = {
        "one KNN (A/B page, no outbox write)": (knn_ctes(a, 10) + NEIGHBOURS_SELECT, lambda p: p),
        "two KNNs": (two, lambda p: p),
        "two KNNs + team draft (no outbox write)": (
            interleaving_sql(a, b, 10, record=False),
            lambda p: {**p, "coins": list(coin_flips(uuid.uuid4(), rounds_for(10)))}),
    }
    print(f"server-side (EXPLAIN ANALYZE, {statements} statements each, medians), load average "
          f"{os.getloadavg()[0]:.1f}:")
    with server_bound_cursor() as cursor:
        for name, (sql, params) in cases.items():
            execution, planning = [], []
            for _ in range(statements):
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params(knn_params(rng.choice(track_ids), ())))
                plan = cursor.fetchone()[0][0]
                execution.append(plan["Execution Time"])
                planning.append(plan["Planning Time"])
            print(f"  {name:>42}: execution {statistics.median(execution):.3f} ms, planning "
                  f"{statistics.median(planning):.3f} ms", flush=True)


def summary(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {"median": statistics.median(ordered), "p90": ordered[int(0.9 * len(ordered))],
            "p99": ordered[int(0.99 * len(ordered))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--requests", type=int, default=1000, help="recommend() calls per round")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of rounds (A/B, then interleaving)")
    parser.add_argument("--explain", type=int, default=300, help="statements per server-side timing (0: skip)")
    args = parser.parse_args()
    setup_django_on(DB_NAME)
    from django.db import connection

    from experiments.models import EventOutbox, Page
    from experiments.selectors import clear_serving_cache
    from experiments.services import experiment_pause, experiment_start
    from recommender.models import Track

    models = ensure_models(args.tracks, args.dim)
    by_kind = experiments(models)
    track_ids = list(Track.objects.values_list("id", flat=True))
    rng = random.Random(0)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.tracks:,} tracks, {args.dim}-d, k = 10, "
          f"{args.requests} requests per round; load average {os.getloadavg()[0]:.1f}")
    differences = []
    for pair in range(args.rounds):
        medians = {}
        for kind in ("ab", "interleaving"):
            experiment = experiment_start(experiment=by_kind[kind])
            clear_serving_cache()
            run_round(track_ids, 50, rng, PLACEMENTS[kind])  # warm: prepared statements, titles cache
            timings, cpu_ms = run_round(track_ids, args.requests, rng, PLACEMENTS[kind])
            figures = summary(timings)
            experiment_pause(experiment=experiment)
            medians[kind] = figures["median"]
            print(f"  pair {pair + 1} {kind:>12}: median {figures['median']:.3f} ms, p90 {figures['p90']:.3f} ms, "
                  f"p99 {figures['p99']:.3f} ms; Python CPU {cpu_ms:.3f} ms per request", flush=True)
        differences.append(medians["interleaving"] - medians["ab"])
        print(f"  pair {pair + 1} interleaving - A/B: {differences[-1]:+.3f} ms (medians)", flush=True)
    print(f"interleaving costs {statistics.median(differences):+.3f} ms per request (median over {args.rounds} pairs; "
          f"each pair: {', '.join(f'{d:+.3f}' for d in differences)})")
    if args.explain:
        server_timing(models, track_ids, args.explain, rng)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {EventOutbox._meta.db_table}, {Page._meta.db_table}")  # the pages served here


if __name__ == "__main__":
    main()
