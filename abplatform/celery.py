"""Celery application shared by the web process and the workers."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

app = Celery("abplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="abplatform.ping")
def ping(value: int) -> dict:
    """Round-trip check used by /healthz and the tests: proves a live worker answers."""
    return {"pong": value, "pid": os.getpid()}


@task_prerun.connect
def drop_stale_database_connections(**_kwargs) -> None:
    """What Django does per request, per task: close a connection that broke or is past CONN_MAX_AGE.

    Celery's own fixup would close every connection around every task (and the event ingest would re-create its
    temp tables each batch); CELERY_DB_REUSE_MAX keeps them, and this keeps a dead one from being reused."""
    from django.db import close_old_connections

    close_old_connections()
