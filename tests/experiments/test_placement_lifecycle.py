"""Holdouts, shipping the winner, scheduled start/stop (service and the real worker's clock), admin refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.lifecycle import experiment_schedules_apply, experiment_ship, holdout_start
from experiments.models import Experiment, Launch, Placement
from experiments.selectors import clear_serving_cache, serving_config
from experiments.services import (
    ExperimentError,
    VariantSpec,
    experiment_create,
    experiment_start,
    experiment_stop,
    layer_free_buckets,
)
from tests.experiments.serving_fixtures import build_world

CHANGELIST = "/admin/experiments/experiment/"
USERS = [f"listener-{i}" for i in range(3000)]


@pytest.fixture
def world(db):
    return build_world(start_experiment=False)


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("boss", password="x" * 12, is_staff=True,
                                                             is_superuser=True))
    return client


def ab(world, name, share, **kwargs):
    return experiment_create(name=name, traffic_fraction=share, variants=[
        VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk, 50)],
        **kwargs)


def served(user: str, placement: str = "track_page"):
    assigned = serving_config().placements[placement].assign(user)
    return assigned.arm.model_id, assigned.experiment.experiment_id if assigned.experiment else None, \
        assigned.variant.key if assigned.variant else None


def test_the_holdout_keeps_its_users_on_the_old_default_whatever_ships(world):
    holdout = holdout_start(placement="track_page", share=0.05)
    assert (holdout.kind, holdout.status, layer_free_buckets("track_page")) == ("holdout", "running", 9000)
    experiment = experiment_start(experiment=ab(world, "text wins", 0.9))  # the rest of the layer
    clear_serving_cache()
    before = {u: served(u) for u in USERS}
    held = [u for u, (_, e, v) in before.items() if e == holdout.pk and v == "holdout"]
    launched = [u for u, (_, e, v) in before.items() if e == holdout.pk and v == "launched"]
    assert 100 < len(held) < 200 and 100 < len(launched) < 200  # 5 % each
    assert all(before[u][0] == world.baseline.pk for u in held + launched)

    experiment_stop(experiment=experiment)
    launch = experiment_ship(experiment=experiment, variant_key="treatment", by="boss", verdict="treatment wins")
    assert (launch.model_id, launch.previous_model_id, launch.experiment_id) == (world.treatment.pk,
                                                                               world.baseline.pk, experiment.pk)
    assert Placement.objects.get(key="track_page").default_model_id == world.treatment.pk
    clear_serving_cache()
    after = {u: served(u) for u in USERS}
    assert all(after[u] == (world.baseline.pk, holdout.pk, "holdout") for u in held)  # still the old model
    assert all(after[u] == (world.treatment.pk, holdout.pk, "launched") for u in launched)  # what shipped
    others = [u for u, (_, e, _) in after.items() if e is None]
    assert others and all(after[u][0] == world.treatment.pk for u in others)
    with pytest.raises(ExperimentError, match="already has a holdout"):
        holdout_start(placement="track_page", share=0.02)


def test_shipping_needs_a_stopped_experiment_and_a_real_variant(world):
    experiment = experiment_start(experiment=ab(world, "running", 0.5))
    with pytest.raises(ExperimentError, match="only a stopped experiment ships"):
        experiment_ship(experiment=experiment, variant_key="treatment")
    experiment_stop(experiment=experiment)
    with pytest.raises(ExperimentError, match="has no variant 'nope'"):
        experiment_ship(experiment=experiment, variant_key="nope")
    assert not Launch.objects.exists()


def test_scheduled_starts_and_stops_are_applied_when_due(world):
    now = timezone.now()
    due = ab(world, "due", 0.3, scheduled_start_at=now - timedelta(minutes=1),
             scheduled_stop_at=now + timedelta(hours=1))
    later = ab(world, "later", 0.3, scheduled_start_at=now + timedelta(hours=1))
    done = experiment_schedules_apply(now=now)
    assert done == [f"started 'due' (scheduled {due.scheduled_start_at:%Y-%m-%d %H:%M})"]
    assert Experiment.objects.get(pk=later.pk).status == "draft"
    experiment_schedules_apply(now=now + timedelta(hours=2))
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == "stopped" and later.status == "running"
    assert layer_free_buckets("track_page") == 7000  # the stopped one's buckets came back


def test_the_admin_refuses_an_over_allocation_and_shows_shares(staff_client, world):
    experiment_start(experiment=ab(world, "big", 0.7))
    data = {"name": "too big", "placement": "track_page", "traffic_fraction": "0.4", "salt": "s",
            "variants-TOTAL_FORMS": "0", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "1000"}
    response = staff_client.post(CHANGELIST + "add/", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "placement &#x27;track_page&#x27; has 30.00% (3000 buckets) free; this experiment asks for 40.00% " \
           "(4000 buckets)" in page
    assert not Experiment.objects.filter(name="too big").exists()
    listing = staff_client.get(CHANGELIST).content.decode()
    assert "70.00% (7000 buckets)" in listing and "0-6999" in listing
    placements = staff_client.get("/admin/experiments/placement/").content.decode()
    assert "30.00% (3000 buckets)" in placements and "big (ab, running, 70%)" in placements


@pytest.mark.django_db(transaction=True)
def test_the_workers_schedule_clock_starts_and_stops_experiments_on_time(monkeypatch):
    """A real ``celery worker`` (its schedule clock ticking every 0.5 s) starts a draft when its time comes and
    stops it at its stop time; nothing else touches it."""
    import uuid

    from django.conf import settings

    from tests.experiments.events_fixtures import relay_is_leading, start_events_worker, stop_worker, wait_until

    world = build_world(start_experiment=False)
    monkeypatch.setenv("EXPERIMENTS_SCHEDULE_POLL_S", "0.5")
    worker = start_events_worker(f"test-clock-{uuid.uuid4().hex[:8]}", settings.DATABASES["default"]["NAME"])
    try:
        wait_until(relay_is_leading, 90, "the worker to be ready")  # the clock starts with the relay
        now = timezone.now()
        experiment = ab(world, "on a timer", 0.2, scheduled_start_at=now + timedelta(seconds=2),
                        scheduled_stop_at=now + timedelta(seconds=6))
        def status() -> str:
            return Experiment.objects.get(pk=experiment.pk).status

        wait_until(lambda: status() == "running", 60, "the scheduled start")
        started = Experiment.objects.get(pk=experiment.pk).started_at
        assert started >= experiment.scheduled_start_at
        wait_until(lambda: status() == "stopped", 30, "the scheduled stop")
        assert Experiment.objects.get(pk=experiment.pk).stopped_at >= experiment.scheduled_stop_at
        assert layer_free_buckets("track_page") == 10_000
    finally:
        stop_worker(worker)


def test_the_list_page_groups_running_experiments_by_placement_at_a_fixed_cost(staff_client, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from experiments.services import placement_create

    placement_create(key="autoplay", default_model=world.treatment)
    experiment_start(experiment=ab(world, "aa", 0.25))
    staff_client.get("/experiments/")
    with CaptureQueriesContext(connection) as one:
        staff_client.get("/experiments/")
    experiment_start(experiment=ab(world, "ab", 0.25))
    experiment_start(experiment=ab(world, "on autoplay", 0.4, placement="autoplay"))
    holdout_start(placement="autoplay", share=0.05)
    with CaptureQueriesContext(connection) as four:
        page = staff_client.get("/experiments/").content.decode()
    assert len(four) == len(one)  # no query per experiment or per placement
    autoplay, track_page = page.split('<h2 data-placement="track_page">')  # placements in key order
    assert track_page.count('data-field="share">25.00%') == 2 and '<span data-field="free">50.00%' in track_page
    assert "on autoplay" in autoplay and '<span data-field="free">50.00%' in autoplay
    assert 'data-field="share">10.00%' in autoplay  # the holdout: 5 % held + 5 % measured
    assert f"Default model: {world.treatment}" in autoplay


def test_the_admin_ships_the_verdicts_winner_and_records_who_when_and_why(staff_client, db):
    from experiments.services import experiment_stop as stop
    from recommender.models import EmbeddingModel
    from tests.experiments.dashboard_fixtures import seed_experiment

    seeded = seed_experiment(users=1500, seed=1)  # b wins
    EmbeddingModel.objects.update(indexed_at=timezone.now())
    experiment = seeded.experiment
    act = {"action": "ship_winner", "_selected_action": [experiment.pk]}
    refused = staff_client.post(CHANGELIST, act, follow=True).content.decode()
    assert "only a stopped experiment ships; it is running" in refused
    stop(experiment=experiment)
    page = staff_client.post(CHANGELIST, act).content.decode()
    assert 'value="b" checked' in page and "b &mdash; dashboard-test-crossmusim v1 (the verdict's winner)" in page
    done = staff_client.post(CHANGELIST, {**act, "variant": "b"}, follow=True).content.decode()
    winner = seeded.variants["b"].embedding_model
    assert "now serves track_page" in done
    launch = Launch.objects.get()
    assert (launch.placement_id, launch.model_id, launch.experiment_id, launch.variant_key, launch.launched_by) == (
        "track_page", winner.pk, experiment.pk, "b", "boss")
    assert launch.verdict and launch.verdict in staff_client.get(
        f"/api/v1/experiments/{experiment.pk}/results").json()["verdict"]
    assert Placement.objects.get(key="track_page").default_model_id == winner.pk
    clear_serving_cache()
    assert serving_config().placements["track_page"].default.model_id == winner.pk


def test_placement_and_holdout_commands(world):
    import io

    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("create_placement", "autoplay", "--default-model", str(world.treatment.pk), stdout=out)
    assert Placement.objects.get(key="autoplay").default_model_id == world.treatment.pk
    for bad in ("auto play", "autoplay"):
        with pytest.raises(CommandError, match="cannot create placement"):
            call_command("create_placement", bad, stdout=io.StringIO())
    call_command("start_holdout", "--placement", "autoplay", "--share", "0.05", stdout=out)
    assert f"5.0% held on {world.treatment}" in out.getvalue()
    assert layer_free_buckets("autoplay") == 9000
    with pytest.raises(CommandError, match="already has a holdout"):
        call_command("start_holdout", "--placement", "autoplay", stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_experiment", "--name", "on autoplay", "--placement", "autoplay", "--traffic-fraction",
                 "0.5", "--variant", "control=baseline", "--variant", f"t={world.treatment.pk}", "--start", stdout=out)
    assert "on autoplay (running, 50.00% of traffic)" in out.getvalue()
    with pytest.raises(CommandError, match="4000 free buckets"):
        call_command("create_experiment", "--name", "too much", "--placement", "autoplay", "--traffic-fraction",
                     "0.5", "--variant", "control=baseline", "--variant", f"t={world.treatment.pk}", "--start",
                     stdout=io.StringIO())


def test_a_default_changed_by_hand_in_the_admin_is_recorded_as_a_launch(staff_client, world):
    placement = Placement.objects.get(key="track_page")
    response = staff_client.post(f"/admin/experiments/placement/{placement.pk}/change/",
                                 {"name": "Track page", "default_model": world.treatment.pk})
    assert response.status_code == 302, response.content.decode()[:1500]
    launch = Launch.objects.get()
    assert (launch.model_id, launch.previous_model_id, launch.experiment_id, launch.launched_by) == (
        world.treatment.pk, world.baseline.pk, None, "boss")
    assert Placement.objects.get(key="track_page").default_model_id == world.treatment.pk
    assert "set by hand" in staff_client.get("/admin/experiments/launch/").content.decode()  # listed, read-only


def test_the_admin_starts_a_holdout_with_the_share_asked(staff_client, world):
    placement = Placement.objects.get(key="track_page")
    act = {"action": "start_holdout", "_selected_action": [placement.pk]}
    assert 'name="share" value="5"' in staff_client.post("/admin/experiments/placement/", act).content.decode()
    done = staff_client.post("/admin/experiments/placement/", {**act, "share": "2.5"}, follow=True).content.decode()
    assert "2.5% held, 2.5% measured" in done
    holdout = Experiment.objects.get(kind="holdout")
    assert holdout.status == "running" and layer_free_buckets("track_page") == 9500
    again = staff_client.post("/admin/experiments/placement/", {**act, "share": "5"}, follow=True).content.decode()
    assert "already has a holdout" in again
