"""Schema moves keep data: API keys, experiments and events written under the old layout (ApiKey in the
experiments app) are all there, and the keys still authenticate, after migrating to the new one."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from abplatform.apikeys.authentication import clear_api_key_cache, verify_api_key
from abplatform.apikeys.models import ApiKey
from experiments.models import EventOutbox, Experiment

OLD_LAYOUT = [("experiments", "0004_hardening"), ("apikeys", None)]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_keys_experiments_and_events_of_the_old_layout_survive_the_move_of_api_keys():
    executor = _migrate(OLD_LAYOUT)
    old = executor.loader.project_state([("experiments", "0004_hardening")]).apps
    key = "0a1b2c3d." + uuid.uuid4().hex
    old.get_model("experiments", "ApiKey").objects.create(
        name="old app", scope="analyst", prefix="0a1b2c3d", key_hash=hashlib.sha256(key.encode()).hexdigest())
    experiment = old.get_model("experiments", "Experiment").objects.create(name="old experiment", status="running")
    old.get_model("experiments", "EventOutbox").objects.create(
        kind=3, event_id=uuid.uuid4(), request_id=uuid.uuid4(), experiment_id=experiment.pk, variant_id=1,
        user_key=1, user_id="u", track_id=0, position=0, created_at=timezone.now(), track_ids=[1], scores=[0.5])

    latest = executor.loader.graph.leaf_nodes()
    _migrate(latest)
    assert not MigrationExecutor(connection).migration_plan(latest)  # fully migrated again
    clear_api_key_cache()
    moved = ApiKey.objects.get(prefix="0a1b2c3d")
    assert (moved.name, moved.scope, moved.active) == ("old app", "analyst", True)
    client = verify_api_key(key)
    assert client is not None and client.api_key_id == moved.pk
    assert Experiment.objects.get(pk=experiment.pk).name == "old experiment"
    assert EventOutbox.objects.filter(experiment_id=experiment.pk).count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiments_apikey")
        assert cursor.fetchone()[0] == 1  # the same table, not a copy


@pytest.mark.django_db(transaction=True)
def test_per_item_impressions_become_pages_and_their_clicks_stay_valid():
    """Migration 0006 on a database of the per-item layout: version-4 and version-7 requests become pages, the
    per-item view gives back the same rows and ids, per-item rows left in the outbox become one recommendation
    row, and clicks on all of them validate (and count once)."""
    from experiments.events.clicks import ClickEvent, clicks_record
    from experiments.events.ids import impression_event_id, new_request_id
    from experiments.events.ingest import drain_outbox
    from experiments.models import Impression, Page

    before = [("experiments", "0005_delete_apikey")]
    executor = _migrate(before)
    old = executor.loader.project_state(before).apps
    experiment = old.get_model("experiments", "Experiment").objects.create(name="per-item era", status="running")
    now = timezone.now()
    legacy, recent, in_outbox = uuid.uuid4(), new_request_id(), new_request_id()
    for request in (legacy, recent):
        for position in (1, 2, 3):
            old.get_model("experiments", "Impression").objects.create(
                event_id=impression_event_id(request, position), request_id=request, experiment_id=experiment.pk,
                variant_id=5, user_key=42, track_id=100 + position, position=position, score=1 - position / 10,
                created_at=now)
    for position in (1, 2):
        old.get_model("experiments", "EventOutbox").objects.create(
            kind=1, event_id=impression_event_id(in_outbox, position), request_id=in_outbox,
            experiment_id=experiment.pk, variant_id=5, user_key=42, user_id="u42", track_id=200 + position,
            position=position, score=0.5, created_at=now)

    _migrate(executor.loader.graph.leaf_nodes())
    page = Page.objects.get(request_id=legacy)
    assert (page.track_ids, page.user_key, page.experiment_id) == ([101, 102, 103], 42, experiment.pk)
    assert Page.objects.get(request_id=recent).scores == pytest.approx([0.9, 0.8, 0.7])
    items = sorted(Impression.objects.filter(request_id=legacy).values_list("event_id", "position", "track_id"))
    assert items == sorted((impression_event_id(legacy, p), p, 100 + p) for p in (1, 2, 3))
    folded = EventOutbox.objects.get(event_id=in_outbox)  # 0006 folded it, 0008 stored its page
    assert folded.kind == 3 and not EventOutbox.objects.filter(kind=1).exists()
    assert Page.objects.get(request_id=in_outbox).track_ids == [201, 202]

    result = clicks_record([
        ClickEvent(uuid.uuid4(), legacy, 102, 2), ClickEvent(uuid.uuid4(), recent, 103, 3),
        ClickEvent(uuid.uuid4(), in_outbox, 201, 1), ClickEvent(uuid.uuid4(), legacy, 999, 1),
        ClickEvent(uuid.uuid4(), legacy, 102, 2),  # the same impression again, under a new id
    ])
    assert (result.accepted, result.duplicates, [r for _, r in result.rejected]) == (
        3, 1, ["track was not shown at this position in this request"])
    drain_outbox()
    assert Page.objects.get(request_id=in_outbox).track_ids == [201, 202]


@pytest.mark.django_db(transaction=True)
def test_pages_waiting_in_the_outbox_or_the_quarantine_move_to_page_and_land_once():
    """Migration 0008 on a database where the outbox still carries pages whole: each page goes to Page (once:
    a page that had landed keeps its row), the outbox row stays to bring it into the aggregates exactly once,
    a click on it validates, and the reverse migration puts the arrays back."""
    from experiments.events.clicks import ClickEvent, clicks_record
    from experiments.events.ids import new_request_id
    from experiments.events.ingest import drain_outbox
    from experiments.events.quarantine import replay_quarantined
    from experiments.models import Page, UserAggregate

    before = [("experiments", "0007_aggregates_fillfactor")]
    executor = _migrate(before)
    old = executor.loader.project_state(before).apps
    experiment = old.get_model("experiments", "Experiment").objects.create(name="outbox era", status="running")
    now = timezone.now()
    waiting, quarantined, landed = new_request_id(), uuid.uuid4(), new_request_id()
    common = dict(kind=3, experiment_id=experiment.pk, variant_id=5, user_key=42, user_id="u42", track_id=0,
                  position=0, created_at=now)
    old.get_model("experiments", "EventOutbox").objects.create(
        event_id=waiting, request_id=waiting, track_ids=[301, 302, 303], scores=[0.9, 0.8, 0.7], **common)
    old.get_model("experiments", "EventQuarantine").objects.create(
        id=10**9, event_id=quarantined, request_id=quarantined, track_ids=[401], scores=[0.6], error="x", **common)
    old.get_model("experiments", "Page").objects.create(  # landed before: untouched
        request_id=landed, experiment_id=experiment.pk, variant_id=5, user_key=42, created_at=now,
        track_ids=[501, 502], scores=[0.5, 0.4])

    _migrate(executor.loader.graph.leaf_nodes())
    assert Page.objects.get(request_id=waiting).track_ids == [301, 302, 303]
    assert Page.objects.get(request_id=quarantined).scores == pytest.approx([0.6])
    assert Page.objects.get(request_id=landed).track_ids == [501, 502]
    assert EventOutbox.objects.filter(experiment_id=experiment.pk).count() == 1
    result = clicks_record([ClickEvent(uuid.uuid4(), waiting, 302, 2), ClickEvent(uuid.uuid4(), quarantined, 401, 1)])
    assert (result.accepted, result.rejected) == (2, [])
    assert replay_quarantined() == 1
    drain_outbox()
    drain_outbox()  # nothing left to count twice
    aggregate = UserAggregate.objects.get(experiment_id=experiment.pk, user_key=42)
    assert (aggregate.impressions, aggregate.clicks) == (3 + 1, 2)

    EventOutbox.objects.create(event_id=waiting, request_id=waiting, **common)  # a page not yet aggregated
    executor = _migrate(before)  # and back: the arrays return to the outbox row
    row = executor.loader.project_state(before).apps.get_model("experiments", "EventOutbox").objects.get(
        event_id=waiting)
    assert (row.track_ids, row.scores) == ([301, 302, 303], pytest.approx([0.9, 0.8, 0.7]))
    _migrate(executor.loader.graph.leaf_nodes())


BEFORE_PLACEMENTS = [("experiments", "0012_metric_plan"), ("recommender", "0002_descriptions_fetch_log")]


@pytest.mark.django_db(transaction=True)
def test_the_running_experiment_keeps_running_with_every_users_assignment_after_placements_arrive():
    """Migration 0013_placements on a one-experiment database: the running experiment lands on track_page, still
    running, and serving puts every user in or out of it, and on its variant, exactly as the old traffic-fraction hash
    did; the active baseline becomes track_page's default; a paused one holds no buckets until resumed."""
    from experiments.assignment import ArmSpec, assign_variant
    from experiments.models import BucketAllocation, Placement
    from experiments.selectors import clear_serving_cache, serving_config

    executor = _migrate(BEFORE_PLACEMENTS)
    old = executor.loader.project_state(BEFORE_PLACEMENTS).apps
    model = old.get_model("recommender", "EmbeddingModel")
    baseline = model.objects.create(name="old-baseline", kind="baseline", dim=8, indexed_at=timezone.now(),
                                    active_for_arm="baseline")
    text = model.objects.create(name="old-text", kind="crossmusim", dim=8, indexed_at=timezone.now())
    experiments = old.get_model("experiments", "Experiment")
    paused = experiments.objects.create(name="paused before", status="paused", salt="paused-salt",
                                        traffic_fraction=0.5, started_at=timezone.now())
    running = experiments.objects.create(name="one at a time", status="running", salt="old-salt",
                                         traffic_fraction=0.37, started_at=timezone.now())
    variants = old.get_model("experiments", "Variant")
    for experiment in (paused, running):
        variants.objects.create(experiment=experiment, key="control", embedding_model=baseline, weight=40,
                                is_control=True)
        variants.objects.create(experiment=experiment, key="treatment", embedding_model=text, weight=60)
    arms = [ArmSpec("control", 40, True), ArmSpec("treatment", 60)]
    users = [f"listener-{i}" for i in range(5000)]
    before = [assign_variant("old-salt", u, arms, 0.37) for u in users]

    _migrate(executor.loader.graph.leaf_nodes())
    clear_serving_cache()
    placement = Placement.objects.get(key="track_page")
    assert placement.default_model_id == baseline.pk and placement.layer_salt == "old-salt"
    assert list(BucketAllocation.objects.values_list("experiment_id", "start", "end")) == [(running.pk, 0, 3700)]
    layer = serving_config().placements["track_page"]
    after = [layer.assign(u) for u in users]
    assert [a.experiment.experiment_id if a.experiment else None for a in after] == [
        running.pk if b.in_experiment else None for b in before]
    assert [a.variant.key for a in after if a.variant] == [b.variant_key for b in before if b.in_experiment]
    assert 0.33 < sum(b.in_experiment for b in before) / len(users) < 0.41
    from experiments.models import Experiment

    assert Experiment.objects.get(pk=running.pk).status == "running"
    assert Experiment.objects.get(pk=paused.pk).placement_id == "track_page"


@pytest.mark.django_db(transaction=True)
def test_plays_migration_backfills_all_traffic_and_pre_periods_and_old_outbox_rows_still_land():
    """Migration 0009 on a database of the clicks-only layout (0008 moves the waiting page to Page first): the
    all-traffic daily rollup is rebuilt from the pages and clicks landed (not from the waiting page), every
    existing user's pre-period sums from it (14 days before their first exposure), the new
    sums start at 0, and outbox rows written before it land and take plays."""
    from datetime import timedelta

    from experiments.events.clicks import ClickEvent
    from experiments.events.ids import click_event_id, new_request_id
    from experiments.events.ingest import drain_outbox
    from experiments.events.plays import PlayEvent, events_record
    from experiments.models import Play, UserAggregate, UserDailyTraffic

    before = [("experiments", "0007_aggregates_fillfactor")]
    executor = _migrate(before)
    old = executor.loader.project_state(before).apps
    Experiment_, Page_, Click_ = (old.get_model("experiments", name) for name in ("Experiment", "Page", "Click"))
    earlier, current = (Experiment_.objects.create(name=name, status="running") for name in ("earlier", "current"))
    now = timezone.now()
    days = {"long ago": now - timedelta(days=30), "pre": now - timedelta(days=5), "exposure": now}
    pages = {}
    for label, at, experiment, k in (("long ago", days["long ago"], earlier, 2), ("pre", days["pre"], earlier, 3),
                                     ("exposure", days["exposure"], current, 4)):
        pages[label] = Page_.objects.create(request_id=new_request_id(), experiment_id=experiment.pk, variant_id=1,
                                            user_key=7, created_at=at, track_ids=list(range(1, k + 1)),
                                            scores=[0.5] * k)
    Click_.objects.create(event_id=uuid.uuid4(), request_id=pages["pre"].request_id, experiment_id=earlier.pk,
                          variant_id=1, user_key=7, track_id=2, position=2, created_at=days["pre"])
    old.get_model("experiments", "UserAggregate").objects.create(
        experiment_id=current.pk, variant_id=1, user_key=7, impressions=4, clicks=0, first_seen=days["exposure"],
        last_seen=days["exposure"])
    waiting = new_request_id()  # a page and its click still in the outbox, in the old columns
    outbox = old.get_model("experiments", "EventOutbox")
    outbox.objects.create(kind=3, event_id=waiting, request_id=waiting, experiment_id=current.pk, variant_id=1,
                          user_key=7, user_id="u7", track_id=0, position=0, created_at=now, track_ids=[11, 12],
                          scores=[0.9, 0.8])
    outbox.objects.create(kind=2, event_id=click_event_id(waiting, 2), request_id=waiting,
                          experiment_id=current.pk, variant_id=1, user_key=7, track_id=12, position=2,
                          created_at=now)

    _migrate(executor.loader.graph.leaf_nodes())
    traffic = {row[0]: row[1:] for row in UserDailyTraffic.objects.values_list("day", "impressions", "clicks",
                                                                               "plays")}
    utc = {label: at.astimezone(UTC).date() for label, at in days.items()}
    assert traffic == {utc["long ago"]: (2, 0, 0), utc["pre"]: (3, 1, 0), utc["exposure"]: (4, 0, 0)}
    user = UserAggregate.objects.get(experiment_id=current.pk)
    assert (user.pre_impressions, user.pre_clicks, user.pre_plays, user.plays, user.listened_seconds) == (
        3, 1, 0, 0, 0.0)  # the page of 5 days ago, not the one of 30 days ago
    assert Experiment.objects.get(pk=current.pk).pre_period_days == 14

    assert drain_outbox() == 1 + 1  # outbox rows: the page and its click
    result = events_record([ClickEvent(uuid.uuid4(), waiting, 12, 2)],
                           [PlayEvent(uuid.uuid4(), waiting, 12, 2, 31.0, False)])
    assert (result.accepted, result.duplicates) == (1, 1)  # the click had come before the migration
    drain_outbox()
    assert Play.objects.get().listened_seconds == 31.0
    user.refresh_from_db()
    assert (user.impressions, user.clicks, user.plays, user.long_listens) == (6, 1, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_the_unread_user_day_rollup_goes_and_comes_back_rebuilt_from_the_raw_events():
    """Migration 0010 drops DailyUserRollup (nothing read it); its reverse rebuilds it from pages, clicks and plays."""
    from experiments.events.ids import new_request_id
    from experiments.models import Click, Page, Play

    experiment = Experiment.objects.create(name="rollup era", status="running")
    now = timezone.now()
    request = new_request_id()
    Page.objects.create(request_id=request, experiment_id=experiment.pk, variant_id=3, user_key=9, created_at=now,
                        track_ids=[1, 2, 3], scores=[0.9, 0.8, 0.7])
    Page.objects.create(request_id=new_request_id(), user_key=9, created_at=now, track_ids=[4], scores=[0.5])
    Click.objects.create(event_id=uuid.uuid4(), request_id=request, experiment_id=experiment.pk, variant_id=3,
                         user_key=9, track_id=2, position=2, created_at=now)
    Play.objects.create(event_id=uuid.uuid4(), request_id=request, experiment_id=experiment.pk, variant_id=3,
                        user_key=9, track_id=2, position=2, listened_seconds=45.0, skipped=False, created_at=now)
    before = [("experiments", "0009_plays")]
    executor = _migrate(before)
    rollup = executor.loader.project_state(before).apps.get_model("experiments", "DailyUserRollup")
    row = rollup.objects.get()
    assert (row.experiment_id, row.variant_id, row.user_key, row.impressions, row.clicks, row.plays,
            row.long_listens, row.short_plays, row.listened_seconds) == (experiment.pk, 3, 9, 3, 1, 1, 1, 0, 45.0)
    _migrate(executor.loader.graph.leaf_nodes())
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('experiments_dailyuserrollup')")
        assert cursor.fetchone()[0] is None


def _columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table])
        return {row[0] for row in cursor.fetchall()}


def _team_draft_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regprocedure('experiments_team_draft(bigint[], bigint[], boolean[], integer)')")
        return cursor.fetchone()[0] is not None


@pytest.mark.django_db(transaction=True)
def test_interleaving_migration_applies_on_top_of_the_dropped_rollup_and_reverses():
    """Migration 0011 on a 0010 database: existing experiments become A/B, a page served before it (narrow outbox
    row) lands with no teams, the team draft function and the team columns (Page.teams, the team of clicks, plays and
    their outbox and quarantine rows, never teams on the outbox) come, and all of it goes again on the way back."""
    from experiments.events.clicks import ClickEvent, clicks_record
    from experiments.events.ids import new_request_id
    from experiments.events.ingest import drain_outbox
    from experiments.models import Click, Page, UserAggregate

    before = [("experiments", "0010_drop_dailyuserrollup")]
    executor = _migrate(before)
    old = executor.loader.project_state(before).apps
    assert not _team_draft_exists() and "teams" not in _columns("experiments_page")
    experiment = old.get_model("experiments", "Experiment").objects.create(name="before interleaving",
                                                                           status="running")
    request, now = new_request_id(), timezone.now()
    old.get_model("experiments", "Page").objects.create(
        request_id=request, experiment_id=experiment.pk, variant_id=5, user_key=7, created_at=now,
        track_ids=[11, 12, 13], scores=[0.9, 0.8, 0.7])
    old.get_model("experiments", "EventOutbox").objects.create(
        kind=3, event_id=request, request_id=request, experiment_id=experiment.pk, variant_id=5, user_key=7,
        user_id="u7", track_id=0, position=0, created_at=now)

    executor = _migrate(executor.loader.graph.leaf_nodes())
    assert Experiment.objects.get(pk=experiment.pk).kind == Experiment.Kind.AB
    assert _team_draft_exists()
    assert "teams" in _columns("experiments_page")
    for table in ("experiments_click", "experiments_play", "experiments_eventoutbox", "experiments_eventquarantine"):
        assert "team" in _columns(table), table
    assert "teams" not in _columns("experiments_eventoutbox") | _columns("experiments_eventquarantine")
    assert clicks_record([ClickEvent(uuid.uuid4(), request, 12, 2)]).accepted == 1
    assert drain_outbox() == 2
    assert Page.objects.get(request_id=request).teams is None and Click.objects.get().team is None
    aggregate = UserAggregate.objects.get(experiment_id=experiment.pk, user_key=7)
    assert (aggregate.impressions, aggregate.clicks) == (3, 1)

    _migrate(before)
    assert not _team_draft_exists()
    assert "teams" not in _columns("experiments_page") and "team" not in _columns("experiments_click")
    assert "kind" not in _columns("experiments_experiment")
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('experiments_interleavinguserday')")
        assert cursor.fetchone()[0] is None
    _migrate(executor.loader.graph.leaf_nodes())
    assert _team_draft_exists()


@pytest.mark.django_db(transaction=True)
def test_variant_moments_migration_fills_every_arm_from_the_user_aggregates_and_the_worker_goes_on():
    """0014 fills VariantMoments from the per-user sums already there (what the analysis then reads instead of
    scanning), and later batches add to them: after a new page lands, they equal a scan of the per-user sums."""
    import numpy as np

    from experiments import variant_moments
    from experiments.events.ingest import drain_outbox
    from experiments.models import Page, UserAggregate, VariantMoments

    before = [("experiments", "0013_placements")]
    executor = _migrate(before)
    old = executor.loader.project_state(before).apps
    experiment = old.get_model("experiments", "Experiment").objects.create(name="before moments", status="running")
    now = timezone.now()
    for user, (imps, clicks, pre) in enumerate([(10, 2, 0), (4, 4, 8), (0, 0, 3), (7, 1, 5)]):
        old.get_model("experiments", "UserAggregate").objects.create(
            experiment_id=experiment.pk, variant_id=5 + user % 2, user_key=user, impressions=imps, clicks=clicks,
            pre_impressions=pre, first_seen=now, last_seen=now)

    _migrate(executor.loader.graph.leaf_nodes())
    stored = variant_moments.read(experiment.pk)
    assert sorted(stored) == [5, 6] and stored[5][0] == 1 and stored[6][0] == 2  # the user without impressions: out
    request = uuid.uuid4()
    Page.objects.create(request_id=request, experiment_id=experiment.pk, variant_id=6, user_key=3, created_at=now,
                        track_ids=[11, 12], scores=[0.9, 0.8])
    EventOutbox.objects.create(kind=3, event_id=request, request_id=request, experiment_id=experiment.pk,
                               variant_id=6, user_key=3, user_id="u3", track_id=0, position=0, created_at=now)
    assert drain_outbox() == 1
    assert UserAggregate.objects.get(experiment_id=experiment.pk, user_key=3).impressions == 9
    kept = {row.variant_id: np.array(row.moments) for row in VariantMoments.objects.filter(experiment_id=experiment.pk)}
    variant_moments.rebuild(experiment.pk)
    for arm, values in variant_moments.read(experiment.pk).items():
        np.testing.assert_allclose(kept[arm], values, rtol=1e-12)
