"""gunicorn's threaded worker, plus load shedding: an API request that cannot be served soon is refused at once.

When requests arrive faster than the server answers them, gthread queues them for its
threads without bound, and every request then waits (at 800 req/s offered on the 2-core VM,
2026-12-05 with the items code: p50 589-760 ms, p99 1.1-1.2 s and 731-3,054 client timeouts in
20 s; docs/serving.md). Here an API request (``/api/``) is answered with
a JSON ``503`` and ``Retry-After: 1`` before any application or database work (a few
microseconds of Python on a thread) when

- ``WEB_MAX_QUEUE`` requests were already waiting for a thread of this worker when it
  arrived (the queue is full: it would wait too long; marked on arrival, refused as soon as a
  thread takes it, behind at most that many), or
- it waited longer than ``WEB_MAX_QUEUE_WAIT_MS`` for a thread all the same (a burst of slow
  requests ahead of it).

So the queue drains at the rate refusals cost, not at the rate answers cost, and the requests
that are answered keep a bounded wait. Pages, the admin and ``/healthz`` are never shed.
Shed requests are counted in the worker's log line every ``REPORT_EVERY_S``.
"""

from __future__ import annotations

import json
import threading
import time

from django.conf import settings
from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

SHED_PREFIX = "/api/"
REPORT_EVERY_S = 10.0


class SheddingThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait_s = settings.WEB_MAX_QUEUE_WAIT_MS / 1000.0
        self.max_queue = settings.WEB_MAX_QUEUE
        self.shed = 0
        self._reported_at = time.monotonic()
        self._waiting = 0  # queued for a thread, not yet taken by one
        self._waiting_lock = threading.Lock()

    def enqueue_req(self, conn) -> None:
        conn.enqueued_at = time.monotonic()
        with self._waiting_lock:
            conn.queue_full = 0 < self.max_queue <= self._waiting
            self._waiting += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        conn.dequeued_at = time.monotonic()
        with self._waiting_lock:
            self._waiting -= 1
        return super().handle(conn)

    def handle_request(self, req, conn):
        waited = getattr(conn, "dequeued_at", 0.0) - getattr(conn, "enqueued_at", 0.0)
        late = self.max_wait_s > 0 and waited > self.max_wait_s
        if (late or getattr(conn, "queue_full", False)) and req.path.startswith(SHED_PREFIX):
            return self._refuse(req, conn, waited)
        return super().handle_request(req, conn)

    def _refuse(self, req, conn, waited: float) -> bool:
        """A 503 written straight to the socket; True keeps the connection (gunicorn drains any unread body)."""
        body = json.dumps({"detail": f"overloaded: the server's queue was full or the request waited "
                                     f"{waited * 1000:.0f} ms for a thread; retry"})
        close = req.should_close() or not self.alive
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
        util.write(conn.sock, (head + body).encode())
        self.shed += 1
        now = time.monotonic()
        if now - self._reported_at > REPORT_EVERY_S:
            self.log.warning("load shedding: %d API requests refused so far (queue of %d full, or waited > %.0f ms)",
                             self.shed, self.max_queue, self.max_wait_s * 1000)
            self._reported_at = now
        return not close
