"""Serving under load: gunicorn on loopback, 100k tracks, auth + assignment + impression recording on.

    .venv/bin/python bench/serve_load.py                  # build the data once (kept), then measure
    .venv/bin/python bench/serve_load.py --duration 30 --rates 400,800,1000
    .venv/bin/python bench/serve_load.py --rebuild        # new synthetic vectors

What it does, in its own database (``bench_serving``):
1. 100k tracks and two embedding models (baseline, crossmusim) of synthetic 256-d vectors
   (a mixture of 1,000 Gaussian clusters, closer to real embeddings than white noise),
   each with its partial HNSW index; a running experiment over both arms; an API key.
2. HNSW recall@10 of the serving query (seed and 20 random ids excluded, iterative scan) at
   several ``ef_search`` values, against exact search in numpy; the serving value is marked.
3. A Celery worker (relay + ingest, so impressions really flow) and gunicorn (abplatform/gunicorn_conf.py), then
   ``wrk`` closed loop (max throughput) and ``bench/loadgen.py`` open loop at fixed rates;
   each request is a random user (of 100k) and a random seed track, k=10.
4. Waits for the event pipeline to land every impression and prints the counts.
5. Several experiments at once (``--compare-experiments 1,3,1,3``): the first open-loop rate again, with
   one experiment holding the whole track_page layer, then three side by side (30 % + 30 % + 40 %, the last
   with three arms), alternating, so each figure sits beside the other's run-to-run spread. Every request
   is recorded in both, so the only difference is the assignment (which stays in-process: no SQL).
6. The same-minute ceiling (``--no-ceiling`` skips it): the bare KNN under the same gunicorn
   (``bench/ceiling_app.py``: no key, no assignment, no recording, no worker), wrk and the
   first open-loop rate, and ours as a fraction of it. This VM's speed swings by a third
   between runs, so a figure of ours only means something beside the ceiling of its minutes.

The load generator shares the machine's cores with everything it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
os.environ["DJANGO_DB_NAME"] = os.environ.get("BENCH_DB_NAME", "bench_serving")
QUEUE = f"bench-serving-{uuid.uuid4().hex[:6]}"
os.environ["CELERY_QUEUE"] = os.environ["EXPERIMENTS_EVENTS_QUEUE"] = QUEUE

from benchdb import reset_synthetic_tracks, setup_django_on  # noqa: E402

DB_NAME = os.environ["DJANGO_DB_NAME"]
MODEL_NAMES = ("bench-serving-baseline", "bench-serving-crossmusim")
USERS = 100_000


def setup_django() -> None:
    setup_django_on(DB_NAME)


def synthetic_vectors(n: int, dim: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(1000, dim)).astype(np.float32)
    labels = rng.integers(0, len(centers), size=n)
    return (centers[labels] + 0.7 * rng.normal(size=(n, dim)).astype(np.float32)).astype(np.float32)


def ensure_world(n_tracks: int, dim: int, rebuild: bool) -> tuple[list, dict]:
    """Tracks + two indexed arms (built once and kept); returns (models, vectors by model id)."""

    import numpy as np

    from recommender.models import EmbeddingModel, Track
    from recommender.services.embeddings import embedding_model_activate, track_embeddings_write

    models = [EmbeddingModel.objects.filter(name=name).order_by("-version").first() for name in MODEL_NAMES]
    complete = all(m is not None and m.indexed_at and m.dim == dim for m in models) and \
        Track.objects.count() == n_tracks
    cache = ROOT / "var" / "bench" / f"serve_vectors_{n_tracks}_{dim}.npz"
    if complete and not rebuild and cache.exists():
        data = np.load(cache)
        return models, {models[0].pk: data["baseline"], models[1].pk: data["crossmusim"]}
    print(f"building {n_tracks:,} tracks x 2 models of {dim}-d vectors (kept for later runs)...", flush=True)
    started = time.perf_counter()
    track_ids = reset_synthetic_tracks(n_tracks, "bench-")
    vectors = {}
    for index, (name, arm) in enumerate(zip(MODEL_NAMES, ("baseline", "crossmusim"), strict=True)):
        model = EmbeddingModel.objects.create(name=name, kind=arm, dim=dim)
        matrix = synthetic_vectors(n_tracks, dim, seed=index)
        report = track_embeddings_write(model=model, track_ids=track_ids, vectors=matrix)
        embedding_model_activate(model=model, arm=arm)
        vectors[arm] = matrix
        print(f"  {name}: wrote in {report.write_seconds:.0f} s, HNSW index in {report.index_seconds:.0f} s",
              flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **vectors)
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    models = [EmbeddingModel.objects.get(name=name) for name in MODEL_NAMES]
    return models, {models[0].pk: vectors["baseline"], models[1].pk: vectors["crossmusim"]}


# Shares of the track_page layer for N experiments side by side (all of it: every request is recorded).
SHARES = {1: (1.0,), 3: (0.3, 0.3, 0.4)}


def set_experiments(models, count: int, kind: str = "ab") -> list[int]:
    """Stop what runs, then start ``count`` experiments covering the whole track_page layer (the last of three
    has three arms: A/B/n; ``kind`` "interleaving" runs one interleaving experiment, two arms)."""
    from experiments.models import Experiment
    from experiments.services import VariantSpec, experiment_create, experiment_start, experiment_stop

    for running in Experiment.objects.filter(status__in=["running", "paused"]):
        experiment_stop(experiment=running)
    started = []
    for index, share in enumerate(SHARES[count]):
        arms = [VariantSpec("control", models[0].pk, 50, True), VariantSpec("treatment", models[1].pk, 50)]
        if count > 1 and index == count - 1 and kind == "ab":
            arms.append(VariantSpec("control-copy", models[0].pk, 50))
        experiment = experiment_create(name=f"bench-{datetime.now(UTC):%Y%m%d-%H%M%S}-{count}-{index}",
                                       traffic_fraction=share, variants=arms, kind=kind)
        started.append(experiment_start(experiment=experiment).pk)
    return started


def fresh_experiment(models, kind: str = "ab") -> tuple[int, str]:
    from abplatform.apikeys.services import api_key_create

    experiment_id = set_experiments(models, 1, kind)[0]
    _, key = api_key_create(name="bench-serving")
    return experiment_id, key


def assignment_cost_us(count: int, users: int = 20_000) -> float:
    """Microseconds per assignment in this process (layer hash + experiment's variant hash + lookups), read from
    the serving configuration as the web workers read it: no SQL, whatever the number of experiments."""
    from experiments.selectors import clear_serving_cache, serving_config

    clear_serving_cache()
    layer = serving_config().placements["track_page"]
    assert len(layer.experiments) == count, (len(layer.experiments), count)
    ids = [f"user-{i}" for i in range(users)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for user in ids:
            layer.assign(user)
        best = min(best, (time.perf_counter() - started) / users * 1e6)
    return best


def compare_experiments(args, models, paths: list[str], headers: dict, rounds: list[int]) -> list[dict]:
    """The first open-loop rate with 1 and 3 experiments running, alternating; a line per round."""
    from loadgen import run_open_loop

    from experiments.selectors import SERVING_CACHE_TTL_S

    rate = float(args.rates.split(",")[0])
    figures = []
    for count in rounds:
        set_experiments(models, count)
        time.sleep(SERVING_CACHE_TTL_S + 1.0)  # every web worker's serving cache has the new layer
        summary = run_open_loop("127.0.0.1", args.port, paths, headers, rate=rate, duration=args.duration).summary()
        drain_backlog()
        assign_us = assignment_cost_us(count)
        figures.append({"experiments": count, "assignment_us": assign_us,
                        **{k: summary[k] for k in ("achieved_rps", "p50", "p99", "errors")}})
        print(f"  {count} experiment{'s' if count > 1 else ' '} running: {rate:.0f} req/s offered, achieved "
              f"{summary['achieved_rps']:.0f}, p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms, "
              f"errors {summary['errors']}; assignment {assign_us:.1f} us in-process", flush=True)
    for count in sorted(set(rounds)):
        mine = [f for f in figures if f["experiments"] == count]
        achieved = ", ".join(f"{f['achieved_rps']:.0f}" for f in mine)
        p99 = ", ".join(f"{f['p99']:.2f}" for f in mine)
        print(f"  {count} running: achieved {achieved} req/s; p99 {p99} ms", flush=True)
    return figures


def measure_recall(models, vectors: dict, queries: int, ef_values: list[int], k: int = 10) -> dict[int, float]:
    """recall@k of the serving KNN (seed + 20 random ids excluded) against exact cosine search."""
    import numpy as np
    from django.db import connection

    from recommender import vector_search
    from recommender.models import Track

    track_ids = np.array(Track.objects.order_by("id").values_list("id", flat=True))
    rng = np.random.default_rng(42)
    recalls: dict[int, float] = {}
    for ef in ef_values:
        hits = total = 0
        for model in models:
            matrix = vectors[model.pk]
            unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
            arm = vector_search.VectorSpace.of(model)
            with connection.cursor() as cursor:
                cursor.execute(f"SET hnsw.ef_search = {int(ef)}")
                cursor.execute("SET hnsw.iterative_scan = relaxed_order")
            vector_search._tuned_connections.add(connection.connection)  # keep this ef for the loop below
            for _ in range(queries // len(models)):
                row = int(rng.integers(len(track_ids)))
                exclude = [int(x) for x in rng.choice(track_ids, size=20, replace=False)]
                scores = unit @ unit[row]
                banned = np.isin(track_ids, [track_ids[row], *exclude])
                scores[banned] = -np.inf
                exact = set(track_ids[np.argpartition(-scores, k)[:k]].tolist())
                got = {n.track_id for n in vector_search.nearest_to_track(arm, int(track_ids[row]), k, exclude)}
                hits += len(exact & got)
                total += k
        recalls[ef] = hits / total
    vector_search._tuned_connections.discard(connection.connection)
    connection.close()
    return recalls


def _server_env(workers: int, threads: int) -> dict:
    # The load generator is one address pushing ~1,000 req/s: the per-address limit (a guard against one
    # device) is off here. The per-key limit and the middleware itself stay on, so their cost is measured.
    return {"RATE_LIMIT_ADDR_PER_S": "0", "RATE_LIMIT_AUTH_FAIL_PER_S": "0", **os.environ, "CONN_MAX_AGE": "600",
            "WEB_WORKERS": str(workers), "WEB_THREADS": str(threads)}


def _log_file(name: str):
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    return open(log_dir / name, "ab")  # noqa: SIM115 - handed to the child process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(workers: int, threads: int, port: int, app: str = "abplatform.wsgi:application",
                   chdir: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), app, "--chdir", str(chdir),
         "-c", str(ROOT / "abplatform" / "gunicorn_conf.py"), "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=_server_env(workers, threads), stdout=_log_file("serve_gunicorn.log"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def start_processes(workers: int, threads: int, port: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "abplatform", "worker", "-Q", QUEUE, "--pool", "solo",
         "--loglevel", "WARNING", "-n", f"{QUEUE}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=_server_env(workers, threads), stdout=_log_file("serve_worker.log"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    return worker, start_gunicorn(workers, threads, port)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def wait_http(url: str, headers: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server did not answer {url} within {timeout}s (see var/bench/serve_gunicorn.log)")


RECOMMENDATIONS_PATH = "/api/v1/recommendations?user=user-%d&seed_track=%d&k=10"
CEILING_PATH = "/knn?user=user-%d&seed_track=%d&k=10"  # bench/ceiling_app.py ignores the user


def request_paths(track_ids: list[int], count: int, template: str = RECOMMENDATIONS_PATH) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(7)
    return [template % (int(u), track_ids[int(s)])
            for u, s in zip(rng.integers(USERS, size=count), rng.integers(len(track_ids), size=count), strict=True)]


def run_wrk(port: int, key: str, track_ids: list[int], duration: int, connections: int,
            template: str = RECOMMENDATIONS_PATH) -> dict:
    sample = ",".join(str(t) for t in track_ids[:: max(1, len(track_ids) // 5000)])
    script = f"""
local ids = {{{sample}}}
math.randomseed(os.time())
request = function()
  local path = string.format("{template}", math.random(1, {USERS}), ids[math.random(1, #ids)])
  return wrk.format("GET", path, {{["Authorization"] = "Api-Key {key}"}})
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    output = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", handle.name,
         f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(handle.name)

    def grab(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, output)
        return match.group(1) if match else default

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "connections": connections, "rps": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "p50": ms(grab(r"50%\s+([\d.]+\w+)", "0ms")), "p99": ms(grab(r"99%\s+([\d.]+\w+)", "0ms")),
        "non_2xx": int(grab(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": grab(r"Socket errors: (.*)", "none"), "raw": output,
    }


def postgres_backends() -> list[int]:
    """Server processes of this database's client sessions (gunicorn threads, the worker, the relay)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def cpu_meter(web: subprocess.Popen, worker: subprocess.Popen | None):
    """CPU by process group; ``worker`` None for a run without the Celery worker (the ceiling)."""
    from loadgen import CpuMeter, group_pids, redis_pids

    return CpuMeter({"web": lambda: group_pids(web.pid), "postgres": postgres_backends,
                     "worker": lambda: group_pids(worker.pid) if worker else [], "redis": redis_pids,
                     "generator": lambda: [os.getpid()]})


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_report(cpu: dict[str, float], requests: int) -> dict:
    per = {name: round(seconds * 1000 / max(requests, 1), 3) for name, seconds in cpu.items()}
    server = per["web"] + per["postgres"] + per["worker"] + per["redis"]
    per["server_total"] = round(server, 3)
    per["ceiling_rps_2_cores"] = round(2000 / server) if server else None
    return per


def print_cpu(per: dict) -> None:
    print(f"    CPU per request: web {per['web']:.2f} ms + postgres {per['postgres']:.2f} ms + worker "
          f"{per['worker']:.2f} ms + redis {per['redis']:.2f} ms = {per['server_total']:.2f} ms "
          f"(generator {per['generator']:.2f} ms) -> "
          f"{per['ceiling_rps_2_cores']} req/s on 2 otherwise idle cores", flush=True)


def drain_backlog() -> dict:
    """Outbox rows still waiting when the load stopped, and how long the worker took to land them: a rate
    is only sustained if the event pipeline kept up with it (a backlog of a second or so is the relay's
    batching, not falling behind)."""
    rows = pipeline_counts()[0]
    started = time.perf_counter()
    wait_for_pipeline()
    return {"outbox_rows": rows, "drain_s": round(time.perf_counter() - started, 2)}


def print_backlog(backlog: dict) -> None:
    print(f"    event pipeline when the load stopped: {backlog['outbox_rows']:,} outbox rows waiting, landed in "
          f"{backlog['drain_s']:.1f} s", flush=True)


def wait_for_pipeline(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while pipeline_counts()[0] and time.monotonic() < deadline:
        time.sleep(0.25)


def _scalar(sql: str):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def items_landed() -> int:
    """Items shown and landed, whichever impression store this checkout has (pages, or one row per item)."""
    if _scalar("SELECT to_regclass('experiments_page') IS NOT NULL"):
        return int(_scalar("SELECT coalesce(sum(cardinality(track_ids)), 0) FROM experiments_page"))
    return int(_scalar("SELECT count(*) FROM experiments_impression"))


def impression_store_bytes() -> int:
    """Heap + indexes + TOAST of the impression store's tables (a view counts nothing)."""
    return int(_scalar("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                       "WHERE c.relname IN ('experiments_page', 'experiments_impression') AND c.relkind = 'r'"))


def wal_lsn() -> int:
    """The current WAL position in bytes: the difference over a run is every byte written, the ingest's included."""
    return int(_scalar("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


def wal_by_relation(start: int, end: int, top: int = 12) -> list[tuple[str, int, int]]:
    """Where a run's WAL went: (relation, bytes, of which full-page images), from ``pg_waldump`` over [start, end).

    A record's bytes go to the first relation it touches (commit records and the like to their resource manager).
    """
    from pgserver._commands import POSTGRES_BIN_PATH

    from abplatform import embedded

    def lsn(value: int) -> str:
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"

    dump = subprocess.run([str(POSTGRES_BIN_PATH / "pg_waldump"), "-p", str(embedded.pg_data_dir() / "pg_wal"),
                           "-s", lsn(start), "-e", lsn(end)], capture_output=True, text=True, check=False).stdout
    names = dict((str(node), name) for node, name in _rows(
        "SELECT pg_relation_filenode(oid), relname FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL"))
    totals: dict[str, list[int]] = {}
    pattern = re.compile(r"rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+)")
    relation = re.compile(r"rel \d+/\d+/(\d+)")
    for line in dump.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        rmgr, rec, tot = match.groups()
        node = (found := relation.search(line)) and found.group(1)
        name = names.get(node, f"filenode {node}") if node else rmgr
        entry = totals.setdefault(name, [0, 0])
        entry[0] += int(tot)
        entry[1] += int(tot) - int(rec)
    return sorted(((name, b, fpi) for name, (b, fpi) in totals.items()), key=lambda row: -row[1])[:top]


def _rows(sql: str) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def pipeline_counts() -> tuple[int, int]:
    return int(_scalar("SELECT count(*) FROM experiments_eventoutbox")), items_landed()


def measure_ceiling(args, key: str, track_ids: list[int], rate: float) -> dict:
    """The bare KNN under the same gunicorn (bench/ceiling_app.py), right after our endpoint's runs."""
    from loadgen import run_open_loop

    port = free_port()
    web = start_gunicorn(args.workers, args.threads, port, "ceiling_app:application", ROOT / "bench")
    figures: dict = {}
    try:
        paths = request_paths(track_ids, 60_000, CEILING_PATH)
        wait_http(f"http://127.0.0.1:{port}{paths[0]}", {})
        run_open_loop("127.0.0.1", port, paths[:2000], {}, rate=300, duration=4)
        meter = cpu_meter(web, None)
        if not args.skip_wrk:
            connections = int(args.wrk_connections.split(",")[0])
            wrk = run_wrk(port, key, track_ids, args.duration, connections, CEILING_PATH)
            figures["wrk"] = {k: v for k, v in wrk.items() if k != "raw"}
            print(f"  ceiling (bare KNN, same gunicorn), wrk {connections} connections: {wrk['rps']:.0f} req/s, "
                  f"p50 {wrk['p50']:.2f} ms, p99 {wrk['p99']:.2f} ms, non-2xx {wrk['non_2xx']}", flush=True)
        meter.start()
        result = run_open_loop("127.0.0.1", port, paths, {}, rate=rate, duration=args.duration)
        summary = result.summary()
        summary["cpu_ms_per_request"] = cpu_report(meter.stop(), result.ok)
        figures["open_loop"] = summary
        print(f"  ceiling, open loop {rate:.0f} req/s: achieved {summary['achieved_rps']:.0f} req/s, "
              f"p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms, p99.9 {summary['p99_9']:.2f} ms, "
              f"errors {summary['errors']}", flush=True)
        print_cpu(summary["cpu_ms_per_request"])
    finally:
        stop(web)
    return figures


def metered_wrk(args, key: str, track_ids: list[int], meter, connections: int, label: str,
                drain: bool = False) -> dict:
    """One wrk closed-loop run with the server's CPU metered (and, with ``drain``, the pipeline drained inside the
    meter, so the worker's share of these requests counts); prints it and returns its figures."""
    meter.start()
    before = children_cpu()
    figures = run_wrk(args.port, key, track_ids, args.duration, connections)
    if drain:
        figures["backlog"] = drain_backlog()
    cpu = meter.stop()
    cpu["generator"] = children_cpu() - before
    figures["cpu_ms_per_request"] = cpu_report(cpu, int(figures["rps"] * args.duration))
    print(f"{label}wrk closed loop, {connections} connections: {figures['rps']:.0f} req/s, "
          f"p50 {figures['p50']:.2f} ms, p99 {figures['p99']:.2f} ms, non-2xx {figures['non_2xx']}, "
          f"socket errors {figures['socket_errors']}", flush=True)
    print_cpu(figures["cpu_ms_per_request"])
    return {k: v for k, v in figures.items() if k != "raw"}


def paused_worker_round(args, worker: subprocess.Popen, meter, paths: list[str], headers: dict, key: str,
                        track_ids: list[int]) -> dict:
    """Ours with the Celery worker stopped (SIGSTOP): each request still authenticates, assigns and durably writes
    its page and outbox row, but nothing is landed beside it; then resumed and drained. Against the ceiling of
    the same minutes this splits our gap into what serving a recorded page costs and what landing it costs."""
    from loadgen import group_pids, run_open_loop

    pids = group_pids(worker.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    out: dict = {}
    try:
        if not args.skip_wrk:
            out["wrk"] = metered_wrk(args, key, track_ids, meter, 8, "worker paused, ")
        rate = float(args.rates.split(",")[0])
        meter.start()
        result = run_open_loop("127.0.0.1", args.port, paths, headers, rate=rate, duration=args.duration)
        summary = result.summary()
        summary["cpu_ms_per_request"] = cpu_report(meter.stop(), result.ok)
        out["open_loop"] = summary
        print(f"worker paused, open loop {rate:.0f} req/s: p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms, "
              f"errors {summary['errors']}", flush=True)
        print_cpu(summary["cpu_ms_per_request"])
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    out["backlog"] = drain_backlog()
    print_backlog(out["backlog"])
    return out


def print_against_ceiling(results: dict, ceiling: dict) -> None:
    ours_open, bare_open = results["open_loop"][0], ceiling["open_loop"]
    ours_cpu = ours_open["cpu_ms_per_request"]["server_total"]
    bare_cpu = bare_open["cpu_ms_per_request"]["server_total"]
    line = (f"ours against the ceiling: open loop {ours_open['target_rps']:.0f} req/s p99 {ours_open['p99']:.1f} vs "
            f"{bare_open['p99']:.1f} ms; server CPU per request {ours_cpu:.2f} vs {bare_cpu:.2f} ms "
            f"({ours_cpu / bare_cpu:.2f}x)")
    if results["wrk"] and "wrk" in ceiling:
        line += (f"; wrk {results['wrk'][0]['rps']:.0f} vs {ceiling['wrk']['rps']:.0f} req/s "
                 f"({results['wrk'][0]['rps'] / ceiling['wrk']['rps']:.0%})")
    print(line, flush=True)
    paused = results.get("paused_worker")
    if paused:
        cpu = paused["open_loop"]["cpu_ms_per_request"]["server_total"]
        line = (f"ours with the worker paused: open loop p99 {paused['open_loop']['p99']:.1f} ms "
                f"({paused['open_loop']['p99'] / bare_open['p99']:.1f}x the ceiling's); server CPU per request "
                f"{cpu:.2f} ms ({cpu / bare_cpu:.2f}x)")
        if "wrk" in paused and "wrk" in ceiling:
            line += f"; wrk {paused['wrk']['rps']:.0f} req/s ({paused['wrk']['rps'] / ceiling['wrk']['rps']:.0%})"
        print(line, flush=True)


def main() -> None:
    global USERS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--duration", type=int, default=20, help="seconds per load run")
    parser.add_argument("--rates", default="400,800", help="open-loop rates, req/s")
    parser.add_argument("--wrk-connections", default="8,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--recall-queries", type=int, default=400)
    parser.add_argument("--skip-wrk", action="store_true")
    parser.add_argument("--compare-experiments", default="1,3,1,3",
                        help="experiments running per extra round at the first rate, alternating ('' skips)")
    parser.add_argument("--users", type=int, default=USERS,
                        help="user population the requests draw from (fewer: more returning users, whose pages "
                             "update their aggregate rows instead of adding rows and index entries)")
    parser.add_argument("--interleaving", action="store_true",
                        help="run an interleaving experiment over the two models instead of an A/B one")
    parser.add_argument("--paused-worker", action="store_true",
                        help="add a round (wrk 8 connections and the first rate) with the Celery worker stopped: "
                             "serving and its durable page write without the landing beside them")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the bare-KNN ceiling run (bench/ceiling_app.py) after ours")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "serve_load.json"))
    args = parser.parse_args()
    USERS = args.users

    if not args.port:
        args.port = free_port()
    setup_django()
    from loadgen import run_open_loop

    from recommender.models import Track
    from recommender.vector_search import ef_search
    HNSW_EF_SEARCH = ef_search()

    load1 = os.getloadavg()[0]
    header = (f"bench/serve_load.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
              f"{os.cpu_count()} cores  load avg {load1:.1f}  db={DB_NAME}  gunicorn gthread "
              f"{args.workers}x{args.threads}  ef_search={HNSW_EF_SEARCH}  users {USERS:,}")
    print(header, flush=True)
    models, vectors = ensure_world(args.tracks, args.dim, args.rebuild)
    experiment_id, key = fresh_experiment(models, "interleaving" if args.interleaving else "ab")
    ef_values = sorted({20, 40, HNSW_EF_SEARCH, 100})
    recalls = measure_recall(models, vectors, args.recall_queries, ef_values)
    print("recall@10 vs exact (seed + 20 ids excluded): " + ", ".join(
        f"ef_search {ef}: {r:.3f}{' <- serving' if ef == HNSW_EF_SEARCH else ''}" for ef, r in recalls.items()))
    track_ids = list(Track.objects.order_by("id").values_list("id", flat=True))
    headers = {"Authorization": f"Api-Key {key}"}
    results: dict = {"header": header, "recall_at_10": recalls, "serving_ef_search": HNSW_EF_SEARCH,
                     "experiment": experiment_id, "wrk": [], "open_loop": []}
    worker, web = start_processes(args.workers, args.threads, args.port)
    try:
        paths = request_paths(track_ids, 60_000)
        wait_http(f"http://127.0.0.1:{args.port}{paths[0]}", headers)
        run_open_loop("127.0.0.1", args.port, paths[:2000], headers, rate=300, duration=4)  # warm up every thread
        meter = cpu_meter(web, worker)
        if not args.skip_wrk:
            for connections in map(int, args.wrk_connections.split(",")):
                figures = metered_wrk(args, key, track_ids, meter, connections, "", drain=True)
                results["wrk"].append(figures)
                print_backlog(figures["backlog"])
                time.sleep(2)
        for rate in map(float, args.rates.split(",")):
            meter.start()
            wal_before = wal_lsn()
            result = run_open_loop("127.0.0.1", args.port, paths, headers, rate=rate, duration=args.duration)
            summary = result.summary()
            summary["backlog"] = drain_backlog()  # the worker's share of these requests' impressions
            wait_for_pipeline()
            wal_after = wal_lsn()
            summary["wal_bytes_per_request"] = round((wal_after - wal_before) / max(result.ok, 1))
            summary["wal_by_relation"] = [
                {"relation": name, "bytes_per_request": round(b / max(result.ok, 1)),
                 "full_page_images_per_request": round(fpi / max(result.ok, 1))}
                for name, b, fpi in wal_by_relation(wal_before, wal_after)]
            summary["cpu_ms_per_request"] = cpu_report(meter.stop(), result.ok)
            results["open_loop"].append(summary)
            print(f"open loop {rate:.0f} req/s for {args.duration}s: achieved {summary['achieved_rps']:.0f} req/s, "
                  f"p50 {summary['p50']:.2f} ms, p95 {summary['p95']:.2f} ms, p99 {summary['p99']:.2f} ms, "
                  f"p99.9 {summary['p99_9']:.2f} ms, max {summary['max_ms']:.1f} ms, errors {summary['errors']} "
                  f"{summary['status']}", flush=True)
            if summary["refused"]:
                print(f"  answered p99 {summary['answered_p99']} ms; refused {summary['refused']} "
                      f"(429/503), their p99 {summary['refused_p99']} ms", flush=True)
            print_cpu(summary["cpu_ms_per_request"])
            print_backlog(summary["backlog"])
            print(f"  WAL per answered request (its outbox row, the worker's landing and aggregates): "
                  f"{summary['wal_bytes_per_request']:,} bytes; by relation: " + ", ".join(
                      f"{row['relation']} {row['bytes_per_request']} ({row['full_page_images_per_request']} FPI)"
                      for row in summary["wal_by_relation"]), flush=True)
            time.sleep(2)
        if args.paused_worker:
            results["paused_worker"] = paused_worker_round(args, worker, meter, paths, headers, key, track_ids)
        if args.compare_experiments:
            print(f"several experiments at once, open loop {args.rates.split(',')[0]} req/s for {args.duration}s "
                  "per round:", flush=True)
            results["experiments_compared"] = compare_experiments(
                args, models, paths, headers, [int(n) for n in args.compare_experiments.split(",")])
        wait_for_pipeline()
        outbox, impressions = pipeline_counts()
        store = impression_store_bytes()
        results["pipeline"] = {"outbox_left": outbox, "impressions_landed": impressions, "store_bytes": store,
                               "store_bytes_per_million_items": round(store / max(impressions, 1) * 1e6)}
        print(f"event pipeline: {impressions:,} impressions landed, {outbox} left in the outbox; impression store "
              f"{store / 2**20:,.0f} MiB = {store / max(impressions, 1) * 1e6 / 2**20:,.1f} MiB per 1M items shown "
              f"(heap + indexes, this database's whole history)", flush=True)
    finally:
        stop(web)
        stop(worker)
    if args.ceiling:
        results["ceiling"] = ceiling = measure_ceiling(args, key, track_ids, float(args.rates.split(",")[0]))
        print_against_ceiling(results, ceiling)
    results["load_avg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
