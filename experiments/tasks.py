"""Celery side of the event pipeline: the batch-ingest task and the relay thread in each worker.

Settings (abplatform/settings.py, each from the environment variable of its name): event
batches travel on the queue ``EXPERIMENTS_EVENTS_QUEUE`` (default ``celery``, the queue a
plain ``celery worker`` consumes). The relay starts with every worker that consumes that
queue (``worker_ready``), so ``celery worker`` is all a deployment runs; a worker on other
queues only (e.g. a test's private queue) runs no relay. ``EXPERIMENTS_OUTBOX_RELAY=0`` makes a
worker that only ingests. Tunables: ``EXPERIMENTS_RELAY_BATCH`` (outbox rows per task, default
10,000; a recommendation row carries k impressions), ``EXPERIMENTS_RELAY_RESEND_S`` (re-send
unconfirmed batches after, default 30 s), ``EXPERIMENTS_RELAY_POLL_S`` (after a partial batch,
wait this long for more rows, default 0.5 s).

The same workers run the schedule clock: every ``EXPERIMENTS_SCHEDULE_POLL_S`` seconds (default 30, 0 turns
it off) a thread applies the experiments' scheduled start and stop times
(``lifecycle.experiment_schedules_apply``); ``experiments.apply_schedules`` is the same as a task, for a
Celery beat or an operator.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import psycopg
from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import OperationalError

from experiments.events.ingest import ingest_or_quarantine

if TYPE_CHECKING:
    from experiments.events.relay import RelayConfig

logger = logging.getLogger(__name__)
INGEST_TASK = "experiments.ingest_outbox_batch"


def events_queue() -> str:
    return settings.EXPERIMENTS_EVENTS_QUEUE


@shared_task(name=INGEST_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, psycopg.OperationalError), retry_backoff=0.2, retry_backoff_max=5,
             max_retries=5)
def ingest_outbox_batch(copy_text: str, count: int = 0) -> dict:
    """Land one relay batch (PostgreSQL COPY text); idempotent, so a redelivery is harmless.

    Rows that cannot be landed are quarantined (``events.quarantine``), the rest lands."""
    result = ingest_or_quarantine(copy_text)
    return {"received": result.received, "impressions": result.impressions, "clicks": result.clicks,
            "quarantined": result.quarantined}


SCHEDULES_TASK = "experiments.apply_schedules"


@shared_task(name=SCHEDULES_TASK, ignore_result=True)
def apply_schedules() -> list[str]:
    from experiments.lifecycle import experiment_schedules_apply

    return experiment_schedules_apply()


def send_batch(copy_text: str, count: int) -> None:
    """The relay's way out: one task per batch; raises at once when the broker is down."""
    ingest_outbox_batch.apply_async(args=[copy_text, count], queue=events_queue(), retry=False)


def relay_conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    db = settings.DATABASES["default"]
    params = {"dbname": db["NAME"], "user": db.get("USER") or None, "password": db.get("PASSWORD") or None,
              "host": db.get("HOST") or None, "port": db.get("PORT") or None}
    return make_conninfo(**{k: v for k, v in params.items() if v})


def relay_config_from_settings() -> RelayConfig:
    """The relay's tunables from the EXPERIMENTS_RELAY_* settings (the relay module itself reads no settings)."""
    from experiments.events.relay import RelayConfig

    return RelayConfig(batch_size=settings.EXPERIMENTS_RELAY_BATCH,
                       resend_after_s=settings.EXPERIMENTS_RELAY_RESEND_S,
                       poll_interval_s=settings.EXPERIMENTS_RELAY_POLL_S)


_relay_stop = threading.Event()
_relay_thread: threading.Thread | None = None


@worker_ready.connect
def start_outbox_relay(sender=None, **_kwargs) -> None:
    global _relay_thread
    if not settings.EXPERIMENTS_OUTBOX_RELAY or _relay_thread is not None:
        return
    consumed = set(sender.app.amqp.queues.consume_from) if sender is not None else set()
    if events_queue() not in consumed:
        logger.info("outbox relay off: this worker does not consume %r", events_queue())
        return
    from experiments.events.relay import OutboxRelay

    relay = OutboxRelay(relay_conninfo(), send_batch, relay_config_from_settings())
    _relay_stop.clear()
    _relay_thread = threading.Thread(target=relay.run_forever, args=(_relay_stop,), name="outbox-relay", daemon=True)
    _relay_thread.start()
    logger.info("outbox relay started")


@worker_shutdown.connect
def stop_outbox_relay(**_kwargs) -> None:
    global _relay_thread
    _relay_stop.set()
    if _relay_thread is not None:
        _relay_thread.join(timeout=5)
        _relay_thread = None


_clock_stop = threading.Event()
_clock_thread: threading.Thread | None = None


def _schedule_clock(stop: threading.Event, interval_s: float) -> None:
    from django.db import close_old_connections, connection

    from experiments.lifecycle import experiment_schedules_apply

    while not stop.wait(interval_s):
        try:
            close_old_connections()
            for line in experiment_schedules_apply():
                logger.info("schedule clock: %s", line)
        except Exception:  # a database outage must not kill the clock; the next tick tries again
            logger.exception("schedule clock: applying schedules failed")
        finally:
            connection.close()


@worker_ready.connect
def start_schedule_clock(sender=None, **_kwargs) -> None:
    global _clock_thread
    interval = float(settings.EXPERIMENTS_SCHEDULE_POLL_S)
    if interval <= 0 or _clock_thread is not None:
        return
    consumed = set(sender.app.amqp.queues.consume_from) if sender is not None else set()
    if events_queue() not in consumed:
        return
    _clock_stop.clear()
    _clock_thread = threading.Thread(target=_schedule_clock, args=(_clock_stop, interval), name="schedule-clock",
                                     daemon=True)
    _clock_thread.start()
    logger.info("schedule clock started (every %.1f s)", interval)


@worker_shutdown.connect
def stop_schedule_clock(**_kwargs) -> None:
    global _clock_thread
    _clock_stop.set()
    if _clock_thread is not None:
        _clock_thread.join(timeout=5)
        _clock_thread = None
