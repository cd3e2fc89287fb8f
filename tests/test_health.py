"""/healthz over real HTTP: fast, says whether events are relayed and landed, and fails when ingestion is stuck."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from experiments.models import EventOutbox, RelayHeartbeat
from tests.experiments.events_fixtures import start_events_worker, stop_worker, wait_until


def _health(live_server) -> tuple[int, dict, float]:
    started = time.perf_counter()
    response = httpx.get(f"{live_server.url}/healthz", timeout=10)
    return response.status_code, response.json(), time.perf_counter() - started


@pytest.mark.django_db(transaction=True)
def test_healthz_reports_relay_and_outbox_and_fails_when_ingestion_is_stuck(live_server, celery_queue, settings):
    status, body, _ = _health(live_server)
    assert status == 503 and not body["relay"]["ok"] and "no relay" in body["relay"]["error"]  # no worker yet

    worker = start_events_worker(f"{celery_queue}-health", connection.settings_dict["NAME"])
    try:
        wait_until(lambda: RelayHeartbeat.objects.exists(), 30, "the relay's first heartbeat")
        status, body, elapsed = _health(live_server)
        assert status == 200, body
        assert body["database"]["ok"] and body["database"]["vector_extension"].startswith("0.8")
        assert body["broker"]["ok"] and body["relay"]["ok"] and body["relay"]["heartbeat_age_s"] < 5
        assert body["outbox"] == {"ok": True, "backlog": 0, "backlog_capped": False, "oldest_age_s": None}
        assert body["quarantine"] == {"rows": 0}
        # a 1-s load-balancer probe must never time out (it took 1.04 s when it pinged the workers)
        assert elapsed < 1.0, elapsed
    finally:
        stop_worker(worker)

    # the worker is gone: an event waits longer than the limit, and the heartbeat goes stale
    settings.HEALTH_OUTBOX_STALE_S = 30
    settings.HEALTH_RELAY_STALE_S = 1
    EventOutbox.objects.create(kind=3, event_id=uuid.uuid4(), request_id=uuid.uuid4(), experiment_id=1,
                               variant_id=1, user_key=1, user_id="u", track_id=1, position=1, score=0.5,
                               created_at=timezone.now() - timedelta(seconds=90))
    time.sleep(1.5)
    status, body, _ = _health(live_server)
    assert status == 503 and body["ok"] is False
    assert not body["outbox"]["ok"] and body["outbox"]["backlog"] == 1 and body["outbox"]["oldest_age_s"] >= 90
    assert "stuck" in body["outbox"]["error"] and not body["relay"]["ok"] and "old" in body["relay"]["error"]


def test_openapi_schema_is_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi" in response.content


@pytest.mark.django_db
def test_api_docs_page_uses_no_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
