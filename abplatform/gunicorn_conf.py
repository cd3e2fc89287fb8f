"""gunicorn settings shared by ``make web`` and ``bench/serve_load.py`` (``gunicorn -c abplatform/gunicorn_conf.py``).

gthread, 2 workers x 4 threads: of the layouts measured on the 2-core VM with the whole
pipeline running (gthread 2x2, 2x4, 3x2, 4x1; sync 4 and 6; gevent 2 workers with a
psycopg pool) it was the most CPU-efficient and had the lowest p99 at 400 req/s (README,
serving bench). Settings (abplatform/settings.py, from the variables of the same names):
``WEB_WORKERS`` (2), ``WEB_THREADS`` (4), ``WEB_CPU_AFFINITY`` (on).

This file reads them from Django's settings, loaded here in gunicorn's master before it forks:
one place reads the environment (and the project's .env), and the workers inherit the loaded
settings instead of each importing them again. ``ABPLATFORM_WEB`` is set first because the
settings read it (the database timeouts of web processes).

Each worker is pinned to one core of those the server may use (``WEB_CPU_AFFINITY=0`` turns it
off): the GIL hand-offs between a worker's threads (~40 futex calls per request) then wake
threads on the same core rather than across cores (likely why it helps; cross-core wake-ups are
dear in a VM).
Open loop at 400 req/s, same hour, same code: p99 13-40 ms (median 21.5) over 8 pinned runs,
19-51 ms (median 35) over 5 unpinned ones; closed-loop throughput did not change (README).
Pinning each worker's PostgreSQL backends to its core as well was not better.

After start-up each worker imports every view and then freezes its heap (``gc.freeze``):
the ~175k objects of Django, DRF, scipy and pandas (the analysis views) stay out of the
collector's reach. Unfrozen, each full collection held the GIL for 50-280 ms under load,
stalling every request of that worker (README, "Where the tail at 400 req/s comes from").
The heartbeat file lives in /dev/shm: gunicorn sets its mtime (os.utime) on every loop turn,
an inode update each time on a disk-backed /tmp (gunicorn's docs advise a tmpfs; not measured here).
"""

import gc
import os
from collections import Counter

# Written before the settings load, which read it: the web process gets statement and lock timeouts on its
# database connections.
os.environ.setdefault("ABPLATFORM_WEB", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

from django.conf import settings as django_settings  # noqa: E402 - after the two variables above

capture_output = True  # print()s and tracebacks of the workers reach the error log, even daemonised

worker_class = "abplatform.web_worker.SheddingThreadWorker"  # gthread + load shedding (WEB_MAX_QUEUE_WAIT_MS)
workers = django_settings.WEB_WORKERS
threads = django_settings.WEB_THREADS
keepalive = 30
limit_request_line = 8190  # gunicorn's maximum: a 500-id exclude list of short ids fits (the default 4094 did not)
backlog = 2048
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pre_fork(server, worker):
    """Give the new worker the core that the fewest live workers hold (a restarted worker refills a gap)."""
    cores = _usable_cores()
    if not django_settings.WEB_CPU_AFFINITY or len(cores) < 2:
        worker.core = None
        return
    held = Counter(getattr(other, "core", None) for other in server.WORKERS.values())
    worker.core = min(cores, key=lambda core: (held[core], core))


def post_fork(server, worker):
    if getattr(worker, "core", None) is not None:
        os.sched_setaffinity(0, {worker.core})
        server.log.info("worker %s pinned to core %s", worker.pid, worker.core)


def post_worker_init(worker):
    """Import every view now (not on the first request), then move the start-up heap out of the collector's way."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports each URL's module
    gc.freeze()
    worker.log.info("worker %s: %d start-up objects frozen out of garbage collection", worker.pid,
                    gc.get_freeze_count())
