"""Shared fixtures: the real embedded PostgreSQL/Redis and a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def celery_queue() -> str:
    """A queue private to this test run, so concurrent runs never take each other's tasks."""
    return f"test-{uuid.uuid4().hex[:10]}"


def start_celery_worker(queue: str, database_name: str, concurrency: int = 1, extra_env: dict | None = None):
    """Start a real ``celery worker`` on the test database; returns the Popen handle."""
    env = {
        **os.environ,
        "DJANGO_DB_NAME": database_name,
        "CELERY_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = open(PROJECT_ROOT / "var" / f"worker-{queue}.log", "ab")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "abplatform", "worker", "-Q", queue,
         "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "INFO",
         "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for_worker(app, queue: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if any(name.startswith(queue) for reply in replies for name in reply):
            return
        time.sleep(0.2)
    raise RuntimeError(f"celery worker for {queue} did not answer within {timeout}s")


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, celery_queue):
    """A real Celery worker consuming this run's queue against the test database."""
    from django.conf import settings

    from abplatform.celery import app

    app.conf.task_default_queue = celery_queue
    process = start_celery_worker(celery_queue, settings.DATABASES["default"]["NAME"])
    try:
        wait_for_worker(app, celery_queue)
        yield process
    finally:
        stop_worker(process)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Every test starts with full rate-limit budgets: the buckets are per process, and the suite's earlier
    requests (all from 127.0.0.1, some with wrong keys on purpose) must not spend a later test's budget."""
    from abplatform import ratelimit

    ratelimit.reset()
    yield
