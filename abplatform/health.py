"""/healthz: one fast JSON answer saying whether the platform can take events and land them.

Checks, each bounded in time so the whole answer takes milliseconds (a load balancer's probe
may time out at 1 s):
- ``database``: reachable, pgvector present (one query under a 500 ms statement timeout);
- ``broker``: a connection to Celery's broker opens (500 ms timeout);
- ``relay``: the outbox relay's heartbeat (written by the active relay inside a Celery
  worker every ~2 s) is younger than ``HEALTH_RELAY_STALE_S``: a worker is alive and relaying;
- ``outbox``: the oldest accepted event not yet landed is younger than ``HEALTH_OUTBOX_STALE_S``
  (the backlog is counted up to 100,000): events are flowing;
- ``quarantine``: rows the worker could not land (reported, not a failure: they are kept and
  re-playable with ``manage.py replay_quarantine``).
``ok`` is false (HTTP 503) when any of the first four fails.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse

from abplatform.celery import app as celery_app
from experiments.models import EventOutbox, EventQuarantine, RelayHeartbeat

BACKLOG_COUNT_CAP = 100_000

_PROBE_SQL = f"""
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
       split_part(version(), ' on ', 1),
       (SELECT extract(epoch FROM now() - beat_at) FROM {RelayHeartbeat._meta.db_table} WHERE id = 1),
       (SELECT host FROM {RelayHeartbeat._meta.db_table} WHERE id = 1),
       (SELECT sent_rows FROM {RelayHeartbeat._meta.db_table} WHERE id = 1),
       (SELECT errors FROM {RelayHeartbeat._meta.db_table} WHERE id = 1),
       (SELECT last_error FROM {RelayHeartbeat._meta.db_table} WHERE id = 1),
       (SELECT extract(epoch FROM now() - created_at) FROM {EventOutbox._meta.db_table} ORDER BY id LIMIT 1),
       (SELECT count(*) FROM (SELECT 1 FROM {EventOutbox._meta.db_table} LIMIT {BACKLOG_COUNT_CAP}) backlog),
       (SELECT count(*) FROM {EventQuarantine._meta.db_table})
"""


def _database_probe() -> tuple[dict, dict, dict, dict]:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 500")
            cursor.execute(_PROBE_SQL)
            (vector, version, beat_age, host, sent, errors, last_error, oldest_age, backlog,
             quarantined) = cursor.fetchone()
    except Exception as error:  # noqa: BLE001 - a health check reports every failure
        failed = {"ok": False, "error": "database unavailable"}
        return {"ok": False, "error": str(error)}, failed, failed, {"rows": None}
    database = {"ok": vector is not None, "version": version, "vector_extension": vector}
    if beat_age is None:
        relay = {"ok": False, "error": "no relay has ever run: start a Celery worker (make worker)"}
    else:
        relay = {"ok": beat_age <= settings.HEALTH_RELAY_STALE_S, "heartbeat_age_s": round(float(beat_age), 2),
                 "host": host, "sent_rows": sent, "errors": errors, "last_error": last_error or None}
        if not relay["ok"]:
            relay["error"] = f"relay heartbeat is {beat_age:.0f} s old (limit {settings.HEALTH_RELAY_STALE_S:.0f} s)"
    oldest = round(float(oldest_age), 2) if oldest_age is not None else None
    outbox = {"ok": oldest is None or oldest <= settings.HEALTH_OUTBOX_STALE_S, "backlog": backlog,
              "backlog_capped": backlog >= BACKLOG_COUNT_CAP, "oldest_age_s": oldest}
    if not outbox["ok"]:
        outbox["error"] = (f"ingestion is stuck: the oldest event waiting is {oldest:.0f} s old "
                           f"(limit {settings.HEALTH_OUTBOX_STALE_S:.0f} s)")
    return database, relay, outbox, {"rows": quarantined}


def _broker() -> dict:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=0.5)
        return {"ok": True, "url": celery_app.conf.broker_url.split("@")[-1]}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "error": str(error)}


def healthz(request):
    database, relay, outbox, quarantine = _database_probe()
    checks = {"database": database, "broker": _broker(), "relay": relay, "outbox": outbox}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"ok": healthy, **checks, "quarantine": quarantine}, status=200 if healthy else 503)
