"""gunicorn settings shared by ``make web`` and ``bench/serve_load.py`` (``gunicorn -c abplatform/gunicorn_conf.py``).

gthread, 2 workers x 4 threads: of the layouts measured on the 2-core VM with the whole
pipeline running (gthread 2x2, 2x4, 3x2, 4x1; sync 4 and 6; gevent 2 workers with a
psycopg pool) it was the most CPU-efficient and had the lowest p99 at 400 req/s (README,
serving bench). Environment: ``WEB_WORKERS`` (2), ``WEB_THREADS`` (4).
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 30
backlog = 2048
