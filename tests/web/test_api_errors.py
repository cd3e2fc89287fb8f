"""Every failure under /api/ is a JSON answer with a reason: oversized, malformed or nested bodies, forms, bugs
(logged with the path), and a database that is locked or refuses connections (503 + Retry-After, through the real
gunicorn with the web process's lock and statement timeouts)."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg.conninfo import make_conninfo

from experiments.models import EventOutbox
from experiments.tasks import relay_conninfo
from tests.experiments.serving_fixtures import build_world
from tests.test_gunicorn_conf import _free_port, _run_gunicorn


@pytest.fixture
def world(transactional_db):
    return build_world(n_tracks=30)


def _click_batch() -> dict:
    return {"events": [{"event_id": str(uuid.uuid4()), "type": "click", "request_id": str(uuid.uuid4()),
                        "track": 1, "position": 1}]}


def test_oversized_body_gets_json_413_before_it_is_read(world, live_server):
    body = b'{"events": [' + b" " * (settings.API_MAX_BODY_BYTES + 10) + b"]}"
    answer = httpx.post(f"{live_server.url}/api/v1/events", content=body, timeout=30,
                        headers={**world.headers, "Content-Type": "application/json"})
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]


def test_deeply_nested_json_gets_json_400(world, live_server):
    body = "[" * 100_000 + "]" * 100_000
    answer = httpx.post(f"{live_server.url}/api/v1/events", content=body, timeout=30,
                        headers={**world.headers, "Content-Type": "application/json"})
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]


def test_malformed_json_and_forms_get_json_errors(world, live_server):
    url = f"{live_server.url}/api/v1/events"
    broken = httpx.post(url, content=b'{"events": [', headers={**world.headers, "Content-Type": "application/json"})
    assert broken.status_code == 400 and "JSON parse error" in broken.json()["detail"]
    form = httpx.post(url, data={"events": "x"}, headers=world.headers)
    assert form.status_code == 415 and "Unsupported media type" in form.json()["detail"]
    ok = httpx.post(url, json=_click_batch(), headers=world.headers)
    assert ok.status_code == 202, ok.text


@pytest.mark.urls("tests.web.error_urls")
def test_a_bug_in_an_api_view_is_a_logged_json_500(client, db):
    before = settings.LOG_FILE.read_text() if settings.LOG_FILE.exists() else ""
    answer = client.get("/api/v1/broken")
    assert answer.status_code == 500 and answer.json() == {"detail": "internal server error (logged)"}
    logged = settings.LOG_FILE.read_text()[len(before):]
    assert "GET /api/v1/broken" in logged and "ZeroDivisionError: a bug in a view" in logged, logged


def _wait_until_serving(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not start")


def _maintenance_connection() -> psycopg.Connection:
    return psycopg.connect(make_conninfo(relay_conninfo(), dbname="postgres"), autocommit=True)


@pytest.mark.slow
def test_gunicorn_answers_503_with_retry_after_on_a_locked_table_and_a_refusing_database(world, tmp_path):
    """Before: an 8-s lock on the outbox made requests hang 7.9 s, and a database restart gave HTML 500s."""
    db_name = connection.settings_dict["NAME"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    params = {"user": "u1", "seed_track": world.track_ids()[0], "k": 3}
    with log_path.open("w") as log:
        server = _run_gunicorn(1, port=port, log=log, DJANGO_DB_NAME=db_name, WEB_DB_LOCK_TIMEOUT_MS="300",
                               LOG_FILE=str(tmp_path / "platform.log"))
        try:
            _wait_until_serving(f"{base}/healthz")
            with httpx.Client(base_url=base, headers=world.headers, timeout=30) as http:
                assert http.get("/api/v1/recommendations", params=params).status_code == 200
                # 1. a lock held elsewhere: the request gives up after the lock timeout, with a JSON 503
                with connection.cursor() as cursor:
                    cursor.execute("BEGIN")
                    cursor.execute(f"LOCK TABLE {EventOutbox._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                    started = time.monotonic()
                    locked = http.get("/api/v1/recommendations", params=params)
                    waited = time.monotonic() - started
                    cursor.execute("ROLLBACK")
                assert locked.status_code == 503, locked.text
                assert locked.headers["Retry-After"] == str(settings.API_RETRY_AFTER_S)
                assert "database" in locked.json()["detail"] and waited < 5, waited
                # 2. the database refuses every connection (as while it restarts): JSON 503, then service resumes
                with _maintenance_connection() as admin:  # from another database: the test's own stays open
                    admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                  "AND pid <> %s", [db_name, connection.cursor().connection.info.backend_pid])
                    try:
                        refused = [http.get("/api/v1/recommendations", params=params) for _ in range(3)]
                        events = http.post("/api/v1/events", json=_click_batch())
                    finally:
                        admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')
                assert [r.status_code for r in refused] == [503, 503, 503], [r.text for r in refused]
                assert all(r.headers["content-type"] == "application/json" and "Retry-After" in r.headers
                           for r in refused)
                assert events.status_code == 503 and events.json()["detail"]
                assert http.get("/api/v1/recommendations", params=params).status_code == 200
        finally:
            server.terminate()
            server.wait(30)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]

