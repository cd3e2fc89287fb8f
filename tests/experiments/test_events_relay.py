"""The outbox relay's bookkeeping, in-process against the real database with a recording ``send``."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from experiments.events.ingest import ingest_copy_batch
from experiments.events.outbox import copy_records
from experiments.events.relay import OutboxRelay, RelayConfig
from experiments.models import EventOutbox, Page
from experiments.tasks import relay_conninfo
from tests.experiments.events_fixtures import served_page


class Recorder:
    def __init__(self) -> None:
        self.batches: list[str] = []
        self.fail = False

    def __call__(self, text: str, count: int) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        assert count == len(copy_records(text))
        self.batches.append(text)

    def ids(self) -> list[int]:
        return [int(line.split("\t", 1)[0]) for batch in self.batches for line in copy_records(batch)]


def add_rows(count: int, explicit_id: int | None = None) -> None:
    now = timezone.now()
    pages, rows = zip(*(served_page(request_id=uuid.uuid4(), experiment_id=1, variant_id=1, user_key=7, user_id="u",
                                    created_at=now, track_ids=[1], scores=[0.5]) for _ in range(count)), strict=True)
    if explicit_id is not None:
        rows[0].id = explicit_id
    Page.objects.bulk_create(pages)
    EventOutbox.objects.bulk_create(rows)


def reserve_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('experiments_eventoutbox', 'id'))")
        return cursor.fetchone()[0]


def run_as_leader(relay: OutboxRelay, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = relay.run_once()
        if relay.is_leader:
            return sent
        time.sleep(0.05)
    raise AssertionError("the relay never took the lead")


@pytest.fixture
def relay(transactional_db):
    recorder = Recorder()
    relay = OutboxRelay(relay_conninfo(), recorder, RelayConfig(batch_size=4, max_inflight=3, resend_after_s=60,
                                                                 gap_wait_s=60, sweep_every_s=0.0))
    relay.recorder = recorder
    yield relay
    relay.close()


def test_sends_in_batches_with_back_pressure_and_confirms(relay):
    add_rows(10)
    while relay.run_once():
        pass
    assert relay.recorder.ids() == sorted(EventOutbox.objects.values_list("id", flat=True))[:12]
    assert len(relay.recorder.batches) == 3  # 4 + 4 + 2, and at most 3 batches in flight
    add_rows(5)
    assert relay.run_once() == 0  # back-pressure: nothing is confirmed yet
    ingest_copy_batch(relay.recorder.batches[0])  # the worker lands (and deletes) the first batch
    assert relay.run_once() == 4
    assert len(relay.inflight) == 3


def test_only_one_relay_leads(relay):
    other = OutboxRelay(relay_conninfo(), Recorder(), RelayConfig())
    try:
        assert relay.run_once() == 0 and relay.is_leader
        add_rows(2)
        assert other.run_once() == 0 and not other.is_leader
        relay.close()  # the leader dies: its session lock goes with it (once the server has ended the session)
        assert run_as_leader(other) == 2
    finally:
        other.close()


def test_unconfirmed_batches_are_resent_after_the_timeout(relay):
    add_rows(3)
    relay.run_once()
    assert len(relay.recorder.batches) == 1
    relay.config = RelayConfig(batch_size=4, max_inflight=3, resend_after_s=0.0, sweep_every_s=60)
    time.sleep(0.01)
    relay.run_once()
    assert len(relay.recorder.batches) == 2 and relay.recorder.batches[1] == relay.recorder.batches[0]
    ingest_copy_batch(relay.recorder.batches[1])
    relay.run_once()
    assert relay.inflight == [] and len(relay.recorder.batches) == 2


def test_a_refusing_broker_keeps_the_rows_for_later(relay):
    add_rows(3)
    relay.recorder.fail = True
    assert relay.run_once() == 0 and relay.stats.send_errors == 1
    relay.recorder.fail = False
    assert relay.run_once() == 3


def test_rows_that_commit_behind_the_cursor_are_picked_up(relay):
    add_rows(1)
    relay.run_once()  # the cursor is set: missing ids above it are tracked as gaps from now on
    gap = reserve_id()  # a request that took its id and commits later
    add_rows(2)
    relay.run_once()
    assert gap in relay.gaps and gap not in relay.recorder.ids()
    add_rows(1, explicit_id=gap)
    relay.run_once()
    assert gap in relay.recorder.ids()
    # a late row whose gap has expired is found by the sweep
    late = reserve_id()
    add_rows(2)
    relay.config = RelayConfig(batch_size=4, max_inflight=50, resend_after_s=60, gap_wait_s=0.0, sweep_every_s=0.0)
    relay.run_once()
    time.sleep(0.01)
    relay.run_once()  # the gap expires; the cursor history moves the sweep's watermark past it
    add_rows(1, explicit_id=late)
    time.sleep(0.01)
    relay.run_once()
    assert late in relay.recorder.ids()


def test_a_new_leader_resends_everything_in_the_outbox(relay):
    add_rows(3)
    relay.run_once()
    relay.close()
    fresh = OutboxRelay(relay_conninfo(), Recorder(), RelayConfig())
    try:
        assert run_as_leader(fresh) == 3
    finally:
        fresh.close()
