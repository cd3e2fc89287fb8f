"""Celery application shared by the web process and the workers."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

app = Celery("abplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="abplatform.ping")
def ping(value: int) -> dict:
    """Round-trip check used by /healthz and the tests: proves a live worker answers."""
    return {"pong": value, "pid": os.getpid()}
