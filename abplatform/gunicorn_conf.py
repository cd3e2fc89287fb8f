"""gunicorn settings shared by ``make web`` and ``bench/serve_load.py`` (``gunicorn -c abplatform/gunicorn_conf.py``).

gthread, 2 workers x 4 threads: of the layouts measured on the 2-core VM with the whole
pipeline running (gthread 2x2, 2x4, 3x2, 4x1; sync 4 and 6; gevent 2 workers with a
psycopg pool) it was the most CPU-efficient and had the lowest p99 at 400 req/s (README,
serving bench). Environment: ``WEB_WORKERS`` (2), ``WEB_THREADS`` (4).

Each worker is pinned to one core of those the server may use (``WEB_CPU_AFFINITY=0`` turns it
off): the GIL hand-offs between a worker's threads (~40 futex calls per request) then wake
threads on the same core rather than across cores (likely why it helps; cross-core wake-ups are
dear in a VM).
Open loop at 400 req/s, same hour, same code: p99 13-40 ms (median 21.5) over 8 pinned runs,
19-51 ms (median 35) over 5 unpinned ones; closed-loop throughput did not change (README).
Pinning each worker's PostgreSQL backends to its core as well was not better.
"""

import os
from collections import Counter

worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 30
backlog = 2048


def _usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pre_fork(server, worker):
    """Give the new worker the core that the fewest live workers hold (a restarted worker refills a gap)."""
    cores = _usable_cores()
    if os.environ.get("WEB_CPU_AFFINITY", "1") == "0" or len(cores) < 2:
        worker.core = None
        return
    held = Counter(getattr(other, "core", None) for other in server.WORKERS.values())
    worker.core = min(cores, key=lambda core: (held[core], core))


def post_fork(server, worker):
    if getattr(worker, "core", None) is not None:
        os.sched_setaffinity(0, {worker.core})
        server.log.info("worker %s pinned to core %s", worker.pid, worker.core)
