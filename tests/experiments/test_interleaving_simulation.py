"""Simulated players on an interleaving experiment: live HTTP server, real worker, real tables. The players see
interleaved pages like any other; their clicks land as team credits and the report prefers the style-led ranker."""

from __future__ import annotations

import time

import pytest
from django.db.models import Sum

from abplatform.apikeys.services import api_key_create
from experiments.analysis import experiment_results
from experiments.models import InterleavingUserDay, Page, UserAggregate
from experiments.services import VariantSpec, experiment_create, experiment_start
from experiments.serving import INTERLEAVED
from experiments.simulation import PlatformClient, SimulationConfig, run_simulation
from tests.experiments.simulation_fixtures import arm_models, label_catalog, relaying_worker


@pytest.fixture(scope="module")
def events_worker(django_db_setup, django_db_blocker):
    with relaying_worker() as process:
        yield process


def _wait_for_credits(experiment, impressions: int, clicks: int, timeout: float = 40.0) -> tuple[int, int, int]:
    """Poll until the worker has landed every item shown and every click; (pages, credits A, credits B)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(InterleavingUserDay.objects.filter(experiment=experiment).values_list(
            "pages", "credits_a", "credits_b"))
        landed = (sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows))
        shown = UserAggregate.objects.filter(experiment=experiment).aggregate(n=Sum("impressions"))["n"] or 0
        if (shown, landed[1] + landed[2]) == (impressions, clicks) or time.monotonic() > deadline:
            return landed
        time.sleep(0.3)


@pytest.mark.django_db(transaction=True)
def test_players_on_an_interleaving_experiment(live_server, events_worker):
    tracks = label_catalog(prefix="il-sim")
    timbre, style = arm_models(tracks, seed=2)
    experiment = experiment_start(experiment=experiment_create(
        name="sim interleaving", kind="interleaving",
        variants=[VariantSpec("control", timbre.pk, is_control=True, name="Timbre"),
                  VariantSpec("treatment", style.pk, name="Style")]))
    _, key = api_key_create(name="simulator interleaving test")
    config = SimulationConfig(users=80, rate=100.0, duration_s=40.0, max_requests=800, seed=4, workers=4,
                              event_batch_size=50, event_flush_s=0.3)
    with PlatformClient(live_server.url, key) as client:
        summary = run_simulation(config, client)
    pages, credits_a, credits_b = _wait_for_credits(experiment, summary.impressions, summary.clicks)
    assert summary.request_errors == 0 and summary.event_post_errors == 0, summary.format()
    assert set(summary.variants) == {INTERLEAVED}
    # a page whose every candidate the player had excluded (48 tracks, long sessions) shows nothing and is not logged
    assert pages == Page.objects.filter(experiment_id=experiment.pk).count() > 0.95 * summary.requests
    assert credits_a + credits_b == summary.clicks > 0
    # the taste model clicks tracks of the seed's style: the style-led ranker's picks earn more credits (about 55 %
    # of some 800 here; the coins come from random request ids, so the split varies by a couple of points)
    print(f"credits A {credits_a}, B {credits_b}")
    assert credits_b > credits_a, (credits_a, credits_b)
    results = experiment_results(experiment)
    assert results.users == summary.users_active and results.credits_b == credits_b
    assert results.share_b.effect > 0.5
