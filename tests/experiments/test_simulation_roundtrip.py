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
