"""/healthz: one JSON answer saying whether each service the platform needs is up."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse

from abplatform.celery import app as celery_app


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
            version, vector = cursor.fetchone()
        return {"ok": vector is not None, "version": version.split(" on ")[0], "vector_extension": vector}
    except Exception as error:  # noqa: BLE001 - a health check reports every failure
        return {"ok": False, "error": str(error)}


def _broker() -> dict:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "url": celery_app.conf.broker_url.split("@")[-1]}
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "error": str(error)}


def _workers() -> dict:
    try:
        replies = celery_app.control.ping(timeout=1.0) or []
    except Exception as error:  # noqa: BLE001
        return {"ok": False, "error": str(error), "count": 0}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "count": len(names), "names": names}


def healthz(request):
    checks = {"database": _database(), "broker": _broker()}
    checks["workers"] = _workers() if checks["broker"]["ok"] else {"ok": False, "count": 0}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"ok": healthy, **checks}, status=200 if healthy else 503)
