"""Credited clicks survive a SIGKILLed worker: real worker processes, real broker, real PostgreSQL (interleaving)."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter

import pytest
from django.conf import settings

from experiments.assignment import user_key
from experiments.events.clicks import ClickEvent, clicks_record
from experiments.models import Click, Experiment, InterleavingPositionRollup, InterleavingUserDay
from experiments.selectors import clear_serving_cache
from experiments.services import VariantSpec, experiment_create, experiment_start
from experiments.serving import recommend
from experiments.team_draft import TEAM_A, TEAM_B
from tests.experiments.events_fixtures import (
    ingest_in_progress,
    kill_worker,
    outbox_empty,
    raw_counts,
    relay_is_leading,
    slow_ingest,
    start_events_worker,
    stop_worker,
    wait_until,
)
from tests.experiments.serving_fixtures import build_world

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_sigkilled_worker_mid_batch_loses_no_credited_click():
    world = build_world(n_tracks=60, start_experiment=False)
    experiment = experiment_start(experiment=experiment_create(
        name="il-sigkill", kind=Experiment.Kind.INTERLEAVING,
        variants=[VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk)]))
    clear_serving_cache()
    rng = random.Random(3)
    ids = world.track_ids()
    credits: Counter = Counter()  # (user, team) -> clicks credited, as the pages shown say
    by_position: Counter = Counter()  # (position, team) -> clicks
    pages = 0
    for r in range(5):
        for u in range(40):
            rec = recommend(user_id=f"il{u}", seed_track_id=ids[(u + r) % len(ids)], k=10)
            pages += 1
            positions = rng.sample(range(1, 11), rng.randint(0, 3))
            events = [ClickEvent(uuid.uuid4(), rec.request_id, rec.items[p - 1].track_id, p) for p in positions]
            assert clicks_record(events).accepted == len(events)
            for p in positions:
                credits[(f"il{u}", rec.teams[p - 1])] += 1
                by_position[(p, rec.teams[p - 1])] += 1
    clicks = sum(credits.values())
    queue = f"test-il-events-{uuid.uuid4().hex[:8]}"
    db_name = settings.DATABASES["default"]["NAME"]
    with slow_ingest(1.5):
        slow = start_events_worker(queue, db_name, batch=40, resend_s=2.0)
        try:
            wait_until(lambda: raw_counts().impressions > 0, 60, "a first committed batch")
            wait_until(ingest_in_progress, 30, "a batch in the middle of its transaction")
            kill_worker(slow)  # SIGKILL: the open transaction is never committed
        finally:
            kill_worker(slow)
    partial = Click.objects.filter(experiment_id=experiment.pk).count()
    assert partial < clicks and not outbox_empty()
    wait_until(lambda: not relay_is_leading(), 15, "the dead relay's lock to go")
    fresh = start_events_worker(queue, db_name, resend_s=2.0)
    try:
        wait_until(lambda: outbox_empty() and not ingest_in_progress(), 90, "the restarted worker to drain the outbox")
        time.sleep(1.0)  # give any redelivered duplicate a chance to (wrongly) land
    finally:
        stop_worker(fresh)
    rows = InterleavingUserDay.objects.filter(experiment_id=experiment.pk)
    assert sum(r.pages for r in rows) == pages
    for u in range(40):
        user_rows = [r for r in rows if r.user_key == user_key(f"il{u}")]
        assert sum(r.credits_a for r in user_rows) == credits[(f"il{u}", TEAM_A)]
        assert sum(r.credits_b for r in user_rows) == credits[(f"il{u}", TEAM_B)]
    assert Click.objects.filter(experiment_id=experiment.pk).count() == clicks
    rollup = InterleavingPositionRollup.objects.filter(experiment_id=experiment.pk)
    assert {(r.position, TEAM_A): r.clicks_a for r in rollup if r.clicks_a} | {
        (r.position, TEAM_B): r.clicks_b for r in rollup if r.clicks_b} == dict(by_position)
    assert all(r.pages == pages for r in rollup)
