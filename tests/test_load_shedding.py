"""Overload behaves: through the real gunicorn worker class, an API request that waited too long for a server thread
or that found its worker's queue full is refused at once with a JSON 503 and Retry-After, the others are answered,
and /healthz is never shed."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from django.db import connection

from experiments.models import EventOutbox
from tests.experiments.serving_fixtures import build_world
from tests.test_gunicorn_conf import _free_port, _run_gunicorn
from tests.web.test_api_errors import _wait_until_serving


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limits", [{"WEB_MAX_QUEUE_WAIT_MS": "100", "WEB_MAX_QUEUE": "0"},  # by the wait alone
                                    {"WEB_MAX_QUEUE_WAIT_MS": "0", "WEB_MAX_QUEUE": "2"}],  # by the queue alone
                         ids=["waited-too-long", "queue-full"])
def test_requests_that_cannot_be_served_soon_are_refused_at_once(tmp_path, limits):
    world = build_world(n_tracks=30)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    params = {"user": "u1", "seed_track": world.track_ids()[0], "k": 3}
    answers: list[httpx.Response] = []

    def ask(path: str, **kwargs) -> None:
        answers.append(httpx.get(f"{base}{path}", timeout=30, **kwargs))

    with (tmp_path / "gunicorn.log").open("w") as log:
        # one worker, one thread: a request stuck on a lock holds the only thread, the next ones queue behind it
        server = _run_gunicorn(1, port=port, log=log, DJANGO_DB_NAME=connection.settings_dict["NAME"],
                               **limits, WEB_DB_LOCK_TIMEOUT_MS="5000",
                               LOG_FILE=str(tmp_path / "platform.log"))
        try:
            _wait_until_serving(f"{base}/healthz")
            assert httpx.get(f"{base}/api/v1/recommendations", params=params, headers=world.headers).status_code == 200
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(f"LOCK TABLE {EventOutbox._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                threads = [threading.Thread(target=ask, args=("/api/v1/recommendations",),
                                            kwargs={"params": {**params, "user": f"u{n}"}, "headers": world.headers})
                           for n in range(8)]
                threads.append(threading.Thread(target=ask, args=("/healthz",)))
                for thread in threads:
                    thread.start()
                    time.sleep(0.02)
                time.sleep(1.0)  # every request is queued or stuck by now
                cursor.execute("ROLLBACK")
            for thread in threads:
                thread.join(30)
        finally:
            server.terminate()
            server.wait(30)
    shed = [r for r in answers if r.status_code == 503 and "overloaded" in r.text]
    served = [r for r in answers if r.status_code == 200 and r.request.url.path.startswith("/api/")]
    health = [r for r in answers if r.request.url.path == "/healthz"]
    assert served and len(shed) >= 4, [(r.request.url.path, r.status_code, r.text[:80]) for r in answers]
    assert all(r.headers["Retry-After"] == "1" and r.headers["content-type"] == "application/json" for r in shed)
    assert health and "overloaded" not in health[0].text  # pages and health checks are never shed
