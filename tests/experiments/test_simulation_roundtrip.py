"""Simulated players against the real platform: live HTTP server, real worker, real tables."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from abplatform.apikeys.services import api_key_create
from experiments.analysis import experiment_results
from experiments.models import Assignment, UserAggregate
from experiments.simulation import PlatformClient, SimulationConfig, run_simulation
from tests.experiments.simulation_fixtures import (
    arm_models,
    label_catalog,
    relaying_worker,
    running_experiment,
    wait_for_aggregates,
)


@pytest.fixture(scope="module")
def events_worker(django_db_setup, django_db_blocker):
    with relaying_worker() as process:
        yield process


@pytest.mark.django_db(transaction=True)
def test_players_clicks_land_in_user_aggregates(live_server, events_worker):
    tracks = label_catalog()
    timbre, style = arm_models(tracks)
    experiment = running_experiment("sim round trip", control=timbre, treatment=style)
    _, key = api_key_create(name="simulator test")
    config = SimulationConfig(users=40, rate=100.0, duration_s=20.0, max_requests=200, seed=3, workers=4,
                              event_batch_size=50, event_flush_s=0.3)

    with PlatformClient(live_server.url, key) as client:
        summary = run_simulation(config, client)
    # Land first, assert after: an ingest still running at teardown would race the test database's flush.
    landed = wait_for_aggregates(experiment, summary.impressions, summary.clicks, summary.plays)

    assert summary.catalog_tracks == len(tracks)
    assert summary.request_errors == 0 and summary.event_post_errors == 0, summary.format()
    assert summary.requests == 200 and summary.stop_reason == "max_requests"
    assert 0.9 * 200 * config.k < summary.impressions <= 200 * config.k  # long sessions exhaust 48 tracks
    assert summary.clicks > 0 and summary.plays == summary.clicks  # every click is listened to, some briefly
    assert (summary.events_accepted, summary.events_duplicate, summary.events_rejected) == (2 * summary.clicks, 0, 0)
    assert set(summary.variants) == {"control", "treatment"}

    for variant, counts in summary.variants.items():
        assert landed[variant]["impressions"] == counts.impressions, variant
        assert landed[variant]["clicks"] == counts.clicks, variant
        assert landed[variant]["users"] == counts.users, variant
        assert (landed[variant]["plays"], landed[variant]["long_listens"]) == (counts.plays, counts.long_listens)
        assert landed[variant]["listened_seconds"] == pytest.approx(counts.listened_seconds), variant
    assert Assignment.objects.filter(experiment=experiment).count() == summary.users_active
    # The plays reach the experiment's metric plan (the default one: the demo experiment's too).
    results = experiment_results(experiment)
    metrics = {m.key: m for m in results.metrics}
    assert [(k, m.role) for k, m in metrics.items()] == [("ctr", "success"), ("stream_rate", "secondary"),
                                                         ("skip_rate", "guardrail"), ("seconds_per_click", "guardrail")]
    assert all(v > 0 for v in metrics["seconds_per_click"].values.values())
    long_listens = sum(c.long_listens for c in summary.variants.values())
    assert (sum(metrics["stream_rate"].values.values()) > 0) == (long_listens > 0)
    assert len(results.decisions) == 1 and results.decisions[0].text


def simulate_with_dropped_treatment(live_server, tmp_path, *, prefix: str, seed: int, users: int, sim_seed: int,
                                    extra: tuple[str, ...] = ()) -> tuple:
    """A fresh catalog and experiment, then ``simulate_players`` with every treatment user dropped (``extra``
    says when); returns (experiment, the run's JSON summary) once the worker has landed its events."""
    tracks = label_catalog(prefix=prefix)
    timbre, style = arm_models(tracks, seed=seed)
    experiment = running_experiment(f"sim {prefix} drop", control=timbre, treatment=style)
    _, key = api_key_create(name=f"simulator {prefix} drop test")
    out = tmp_path / "summary.json"
    call_command(
        "simulate_players", "--users", str(users), "--rate", "100", "--duration", "20", "--seed", str(sim_seed),
        "--workers", "4", "--api-key", key, "--base-url", live_server.url, "--drop-arm", "treatment",
        "--drop-fraction", "1.0", *extra, "--no-progress", "--summary-json", str(out),
    )
    summary = json.loads(out.read_text())
    wait_for_aggregates(experiment, summary["impressions"], summary["clicks"], summary["plays"])
    return experiment, summary


@pytest.mark.django_db(transaction=True)
def test_drop_arm_users_vanish_after_their_first_request(live_server, events_worker, tmp_path):
    experiment, summary = simulate_with_dropped_treatment(
        live_server, tmp_path, prefix="drop", seed=1, users=30, sim_seed=5)
    assert summary["request_errors"] == 0 and summary["stop_reason"] == "all sessions played"
    treatment, control = summary["variants"]["treatment"], summary["variants"]["control"]
    assert treatment["vanished"] == treatment["users"] > 0 and control["vanished"] == 0
    assert treatment["requests"] == treatment["users"] and treatment["clicks"] == 0
    assert control["requests"] > control["users"]  # the other arm keeps playing

    rows = UserAggregate.objects.filter(experiment=experiment).values_list("variant__key", "impressions", "clicks")
    dropped = [(impressions, clicks) for variant, impressions, clicks in rows if variant == "treatment"]
    assert len(dropped) == treatment["users"] and set(dropped) == {(10, 0)}  # one page of 10, never a click


@pytest.mark.django_db(transaction=True)
def test_users_lost_before_their_first_request_never_reach_the_platform(live_server, events_worker, tmp_path):
    """The SRM proof's mode: the arm is computed from the experiment's salt, and exactly that arm goes missing."""
    experiment, summary = simulate_with_dropped_treatment(
        live_server, tmp_path, prefix="early", seed=2, users=40, sim_seed=6,
        extra=("--max-requests", "60", "--drop-when", "before_first_request"))
    assert summary["request_errors"] == 0 and summary["users_vanished"] > 5
    assert set(summary["variants"]) == {"control", "treatment"}
    assert summary["variants"]["treatment"]["requests"] == 0  # only the vanished count lives under treatment
    assert set(Assignment.objects.filter(experiment=experiment).values_list("variant__key", flat=True)) == {"control"}
    assert Assignment.objects.filter(experiment=experiment).count() == summary["users_active"]


@pytest.mark.django_db(transaction=True)
def test_sessions_spread_over_placements_land_in_each_experiment_with_no_shared_user(live_server, events_worker):
    """Two experiments side by side on track_page and one on autoplay, players spread 2:1 over the placements:
    every experiment's aggregates equal what its players saw and clicked, every page names its placement, and
    no user is in two experiments of one placement."""
    from django.db import connection

    from experiments.lifecycle import placement_set_default
    from experiments.models import Page, Placement
    from experiments.services import (
        VariantSpec,
        experiment_create,
        experiment_start,
        placement_create,
    )

    tracks = label_catalog(prefix="placements")
    timbre, style = arm_models(tracks, seed=5)
    placement_set_default(placement=Placement.objects.get(key="track_page"), model=timbre, by="test")
    placement_create(key="autoplay", default_model=timbre)
    arms = [VariantSpec("control", timbre.pk, 50, True), VariantSpec("treatment", style.pk, 50)]
    experiments = [experiment_start(experiment=experiment_create(name=name, traffic_fraction=share, placement=where,
                                                                 variants=arms))
                   for name, share, where in (("left", 0.4, "track_page"), ("right", 0.4, "track_page"),
                                              ("auto", 0.5, "autoplay"))]
    _, key = api_key_create(name="simulator placements test")
    config = SimulationConfig(users=60, rate=100.0, duration_s=20.0, max_requests=240, seed=11, workers=4,
                              event_batch_size=50, event_flush_s=0.3,
                              placements=(("track_page", 2.0), ("autoplay", 1.0)))
    with PlatformClient(live_server.url, key) as client:
        summary = run_simulation(config, client)
    expected = {e.pk: {v: summary.arms.get(f"{e.pk}/{v}") for v in ("control", "treatment")} for e in experiments}
    for experiment in experiments:
        seen = [c for c in expected[experiment.pk].values() if c is not None]
        landed = wait_for_aggregates(experiment, sum(c.impressions for c in seen), sum(c.clicks for c in seen),
                                     sum(c.plays for c in seen))
        for variant, counts in expected[experiment.pk].items():
            assert counts is not None, (experiment.name, variant)  # every arm was reached
            assert (landed[variant]["impressions"], landed[variant]["clicks"], landed[variant]["plays"],
                    landed[variant]["users"]) == (counts.impressions, counts.clicks, counts.plays, counts.users), (
                experiment.name, variant)

    assert summary.request_errors == 0 and set(summary.placements) == {"track_page", "autoplay"}
    assert summary.placements["track_page"] > summary.placements["autoplay"] > 0  # sessions drawn 2:1
    assert set(Page.objects.filter(experiment_id=experiments[2].pk).values_list("placement", flat=True)) == {
        "autoplay"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT placement, user_key FROM experiments_page GROUP BY 1, 2 "
                       "HAVING count(DISTINCT experiment_id) > 1")
        assert cursor.fetchall() == []
