"""Event pipeline end to end: outbox -> relay -> Celery -> batch ingest -> aggregates, exactly once.

Real worker processes, a real broker, real PostgreSQL; the worker is SIGKILLed mid-batch and
a private broker is killed and restarted, and every event is counted: 0 lost, 0 twice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
from django.conf import settings

from experiments.events.clicks import ClickEvent
from experiments.events.ingest import drain_outbox, ingest_copy_batch
from experiments.events.outbox import outbox_copy_text
from experiments.events.plays import PlayEvent, events_record
from experiments.models import (
    Assignment,
    Impression,
    PositionRollup,
    UserAggregate,
    UserDailyTraffic,
    VariantDailyMoments,
)
from experiments.serving import recommend
from tests.experiments.events_fixtures import (
    LOG_DIR,
    Counts,
    RedisServer,
    assert_aggregates_match_raw_events,
    ingest_in_progress,
    kill_worker,
    landed_counts,
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


@dataclass(frozen=True)
class Produced:
    impressions: int
    clicks: int
    plays: int


def produce(world, users: int, requests_per_user: int, k: int = 10, click_every: int = 3, tag: str = "u") -> Produced:
    """Recommendations for ``users`` users and a click on every ``click_every``-th first item, followed in the same
    batch by its play (every other one a long listen), like a player's; what was written to the outbox."""
    impressions = clicks = plays = 0
    ids = world.track_ids()
    for r in range(requests_per_user):
        for u in range(users):
            rec = recommend(user_id=f"{tag}{u}", seed_track_id=ids[(u + r) % len(ids)], k=k)
            impressions += len(rec.items)
            if (u + r) % click_every == 0:
                track = rec.items[0].track_id
                seconds = 12.5 if (u + r) % 2 else 95.25
                result = events_record([ClickEvent(uuid.uuid4(), rec.request_id, track, 1)],
                                       [PlayEvent(uuid.uuid4(), rec.request_id, track, 1, seconds, seconds < 30)])
                assert (result.accepted, result.rejected) == (2, [])
                clicks += 1
                plays += 1
    return Produced(impressions, clicks, plays)


def db_name() -> str:
    return settings.DATABASES["default"]["NAME"]


@pytest.mark.django_db(transaction=True)
def test_replayed_batches_never_count_twice():
    world = build_world(n_tracks=60)
    made = produce(world, users=12, requests_per_user=2, k=5)
    text, _ = outbox_copy_text(10_000)
    first = ingest_copy_batch(text)
    assert (first.impressions, first.clicks, first.plays) == (made.impressions, made.clicks, made.plays)
    again = ingest_copy_batch(text)  # a redelivered message after the outbox was confirmed
    assert (again.impressions, again.clicks, again.plays) == (0, 0, 0)
    assert outbox_empty()
    assert raw_counts() == Counts(made.impressions, made.clicks, made.plays)
    assert sum(UserAggregate.objects.values_list("impressions", flat=True)) == made.impressions
    assert sum(UserAggregate.objects.values_list("plays", flat=True)) == made.plays
    assert sum(PositionRollup.objects.values_list("clicks", flat=True)) == made.clicks
    assert Assignment.objects.count() == 12
    assert_aggregates_match_raw_events()
    # later events of the same users update the cumulative moments incrementally
    more = produce(world, users=12, requests_per_user=1, k=5, click_every=2)
    assert drain_outbox(batch_size=7) == more.impressions // 5 + more.clicks + more.plays  # small batches (rows)
    assert (sum(VariantDailyMoments.objects.values_list("sum_impressions", flat=True))
            == made.impressions + more.impressions)
    assert sum(VariantDailyMoments.objects.values_list("sum_plays", flat=True)) == made.plays + more.plays
    assert sum(VariantDailyMoments.objects.values_list("users", flat=True)) == 12
    assert_aggregates_match_raw_events()


@pytest.mark.django_db(transaction=True)
def test_player_round_trip_over_http_through_the_worker(live_server):
    world = build_world(n_tracks=80)
    queue = f"test-events-{uuid.uuid4().hex[:8]}"
    worker = start_events_worker(queue, db_name())
    try:
        with httpx.Client(base_url=live_server.url, headers=world.headers, timeout=30) as player:
            shown, events = 0, []
            for i in range(8):
                body = player.get("/api/v1/recommendations",
                                  params={"user": f"player{i}", "seed_track": world.tracks[i].pk, "k": 5}).json()
                shown += len(body["items"])
                event = {"event_id": str(uuid.uuid4()), "type": "click", "request_id": body["request_id"],
                         "track": body["items"][1]["track"], "position": 2, "client_time": "2026-11-25T10:00:00Z"}
                play = {**event, "event_id": str(uuid.uuid4()), "type": "play", "listened_seconds": 10.0 * i,
                        "skipped": i < 3}
                events += [event, play]
                answer = player.post("/api/v1/events", json={"events": [event, play, event, play]})
                assert answer.status_code == 202 and answer.json() == {"accepted": 2, "duplicates": 2, "rejected": []}
            bad = player.post("/api/v1/events", json={"events": [{"event_id": "x"}]})
            assert bad.status_code == 400 and "event_id" in bad.json()["detail"]
            wait_until(lambda: outbox_empty() and landed_counts().impressions == shown, 60, "the worker to land events")
            # a late repeat of a click or play that has landed is acknowledged and not counted again
            late = player.post("/api/v1/events", json={"events": events[:6]}).json()
            assert late == {"accepted": 0, "duplicates": 6, "rejected": []}
        assert raw_counts() == Counts(shown, 8, 8)
        assert sum(PositionRollup.objects.filter(position=2).values_list("clicks", flat=True)) == 8
        assert sum(UserAggregate.objects.values_list("impressions", flat=True)) == shown
        assert sum(UserAggregate.objects.values_list("long_listens", flat=True)) == 5  # 30, 40, ..., 70 s
        assert sum(UserAggregate.objects.values_list("listened_seconds", flat=True)) == 280.0
        assert_aggregates_match_raw_events()
    finally:
        stop_worker(worker)


@pytest.mark.django_db(transaction=True)
def test_sigkilled_worker_mid_batch_loses_and_doubles_nothing():
    world = build_world(n_tracks=60)
    made = produce(world, users=40, requests_per_user=5, k=10, click_every=2)
    impressions, clicks, plays = made.impressions, made.clicks, made.plays
    queue = f"test-events-{uuid.uuid4().hex[:8]}"
    with slow_ingest(1.5):
        slow = start_events_worker(queue, db_name(), batch=40, resend_s=2.0)
        try:
            wait_until(lambda: landed_counts().impressions > 0, 60, "a first committed batch")
            wait_until(ingest_in_progress, 30, "a batch in the middle of its transaction")
            kill_worker(slow)  # SIGKILL to the whole worker: the open transaction is never committed
        finally:
            kill_worker(slow)
    partial = landed_counts()
    assert 0 < partial.impressions + partial.clicks + partial.plays < impressions + clicks + plays
    assert not outbox_empty()
    wait_until(lambda: not relay_is_leading(), 15, "the dead relay's lock to go")
    fresh = start_events_worker(queue, db_name(), resend_s=2.0)
    try:
        wait_until(lambda: outbox_empty() and not ingest_in_progress(), 90, "the restarted worker to drain the outbox")
        time.sleep(1.0)  # give any redelivered duplicate a chance to (wrongly) land
    finally:
        stop_worker(fresh)
    final = raw_counts()
    assert final == Counts(impressions, clicks, plays)  # not a play lost or doubled
    assert Impression.objects.values("event_id").distinct().count() == impressions
    assert sum(UserAggregate.objects.values_list("impressions", flat=True)) == impressions
    assert sum(UserAggregate.objects.values_list("clicks", flat=True)) == clicks
    assert sum(UserAggregate.objects.values_list("plays", flat=True)) == plays
    assert sum(UserDailyTraffic.objects.values_list("plays", flat=True)) == plays
    assert_aggregates_match_raw_events()


@pytest.mark.django_db(transaction=True)
def test_broker_stopped_and_restarted_loses_and_doubles_nothing():
    world = build_world(n_tracks=60)
    redis = RedisServer()
    redis.start()
    queue = f"test-events-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(slow_ingest(0.3))  # exits last: after the worker stopped
        stack.callback(redis.cleanup)
        worker = start_events_worker(queue, db_name(), batch=10, resend_s=3.0, broker_url=redis.url)
        stack.callback(stop_worker, worker)  # runs first
        before = produce(world, users=20, requests_per_user=2, tag="a")
        wait_until(lambda: landed_counts().impressions > 0, 60, "the first events through the private broker")
        # messages queued in the broker when it dies are lost with it (no persistence)...
        redis.kill()
        during = produce(world, users=20, requests_per_user=3, tag="b")  # the API keeps accepting
        time.sleep(1.5)
        redis.start()
        # ...and the relay re-sends whatever the worker has not confirmed
        wait_until(lambda: outbox_empty() and not ingest_in_progress(), 120, "the outbox to drain after the restart")
        time.sleep(1.0)
    log = (LOG_DIR / f"events-worker-{queue}.log").read_text()
    assert "broker refused" in log and "re-sent" in log  # the failure really happened and was recovered
    assert raw_counts() == Counts(before.impressions + during.impressions, before.clicks + during.clicks,
                                  before.plays + during.plays)
    assert sum(UserAggregate.objects.values_list("impressions", flat=True)) == before.impressions + during.impressions
    assert sum(UserAggregate.objects.values_list("clicks", flat=True)) == before.clicks + during.clicks
    assert_aggregates_match_raw_events()


@pytest.mark.django_db(transaction=True)
def test_worker_keeps_its_connection_across_batches_and_survives_the_database_dropping_it():
    """The worker reuses its database connection (and the ingest's temp tables) from batch to batch; when the
    database drops it (a restart, an administrator's terminate), the next batch reconnects and nothing is lost."""
    from django.db import connection

    world = build_world(n_tracks=60)
    queue = f"test-events-{uuid.uuid4().hex[:8]}"
    worker = start_events_worker(queue, db_name(), batch=10, resend_s=2.0)

    def worker_backends() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
            return {row[0] for row in cursor.fetchall()}

    try:
        first = produce(world, users=20, requests_per_user=2, tag="a")
        wait_until(lambda: outbox_empty() and landed_counts().impressions == first.impressions, 60, "a first landing")
        kept = worker_backends()
        assert len(kept) >= 2  # the relay's session and the ingest's, still open between batches
        second = produce(world, users=20, requests_per_user=2, tag="b")  # dozens more batches of 10 rows
        wait_until(lambda: outbox_empty() and landed_counts().impressions == first.impressions + second.impressions,
                   60, "a second landing")
        assert kept and kept <= worker_backends()  # the same sessions served the later batches
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS t(pid)", [list(kept)])
        third = produce(world, users=20, requests_per_user=2, tag="c")
        total = first.impressions + second.impressions + third.impressions
        wait_until(lambda: outbox_empty() and landed_counts().impressions == total, 90, "landing after the drop")
        time.sleep(1.0)
    finally:
        stop_worker(worker)
    clicks = first.clicks + second.clicks + third.clicks
    assert landed_counts() == Counts(total, clicks, first.plays + second.plays + third.plays)
    assert_aggregates_match_raw_events()
