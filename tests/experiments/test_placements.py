"""Placements and layers against the real database: many experiments at once, never a shared user, sticky users
across starts, pauses and stops, over-allocation refused, the placement parameter of the API."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.models import BucketAllocation, EventOutbox, Page
from experiments.selectors import clear_serving_cache, serving_config
from experiments.services import (
    ExperimentError,
    VariantSpec,
    experiment_create,
    experiment_pause,
    experiment_start,
    experiment_stop,
    layer_free_buckets,
    placement_create,
)
from tests.experiments.serving_fixtures import build_world

URL = "/api/v1/recommendations"
USERS = [f"listener-{i}" for i in range(4000)]


@pytest.fixture
def world(db):
    return build_world(start_experiment=False)


def ab(world, name, share, placement="track_page", arms=2):
    models = [world.baseline.pk, world.treatment.pk]
    variants = [VariantSpec(f"v{i}" if i else "control", models[min(i, 1)], 50, i == 0) for i in range(arms)]
    return experiment_create(name=name, traffic_fraction=share, placement=placement, variants=variants)


def assignments(placement="track_page") -> dict[str, tuple[int, str] | None]:
    """user -> (experiment id, variant key), or None on the default, as serving decides it now."""
    clear_serving_cache()
    layer = serving_config().placements[placement]
    found = {}
    for user in USERS:
        assigned = layer.assign(user)
        found[user] = (assigned.experiment.experiment_id, assigned.variant.key) if assigned.experiment else None
    return found


def test_three_experiments_run_side_by_side_with_their_shares_and_no_shared_user(world):
    aa = experiment_start(experiment=ab(world, "aa", 0.25))
    abt = experiment_start(experiment=ab(world, "ab", 0.25))
    abn = experiment_start(experiment=ab(world, "abn", 0.40, arms=3))
    assert layer_free_buckets("track_page") == 1000
    found = assignments()
    shares = Counter(value[0] if value else None for value in found.values())
    for experiment, share in ((aa, 0.25), (abt, 0.25), (abn, 0.40), (None, 0.10)):
        key = experiment.pk if experiment else None
        assert abs(shares[key] / len(USERS) - share) < 0.03, (key, shares)
    arms = Counter(value[1] for value in found.values() if value and value[0] == abn.pk)
    assert set(arms) == {"control", "v1", "v2"} and min(arms.values()) > 0.25 * sum(arms.values())
    held = list(BucketAllocation.objects.filter(released_at__isnull=True).values_list("experiment_id", "start", "end"))
    assert sum(end - start for _, start, end in held) == 9000


def test_starts_pauses_and_stops_never_move_another_experiments_users(world):
    first = experiment_start(experiment=ab(world, "first", 0.30))
    second = experiment_start(experiment=ab(world, "second", 0.30))
    before = assignments()
    seconds = {u: v for u, v in before.items() if v and v[0] == second.pk}
    firsts = {u for u, v in before.items() if v and v[0] == first.pk}
    assert len(seconds) > 900 and len(firsts) > 900

    experiment_stop(experiment=first)  # frees its buckets
    third = experiment_start(experiment=ab(world, "third", 0.50))  # takes free buckets only
    experiment_pause(experiment=second)
    paused = assignments()
    assert all(paused[u] is None for u in seconds)  # the default serves a paused experiment's users
    experiment_start(experiment=second)  # resume: the same buckets, the same variants
    after = assignments()
    assert {u: after[u] for u in seconds} == seconds
    thirds = {u for u, v in after.items() if v and v[0] == third.pk}
    assert not thirds & set(seconds) and thirds & firsts  # the third took buckets the first freed
    assert not any(v and v[0] == first.pk for v in after.values())


def test_over_allocation_is_refused_and_changes_nothing(world):
    experiment_start(experiment=ab(world, "big", 0.60))
    too_big = ab(world, "too-big", 0.50)
    with pytest.raises(ExperimentError, match=r"4000 free buckets \(40.00% of traffic\).*5000 \(50.00%\)"):
        experiment_start(experiment=too_big)
    too_big.refresh_from_db()
    assert too_big.status == "draft" and not BucketAllocation.objects.filter(experiment=too_big).exists()
    assert layer_free_buckets("track_page") == 4000
    experiment_start(experiment=ab(world, "fits", 0.40))
    assert layer_free_buckets("track_page") == 0


def test_placements_have_their_own_layers_and_defaults(client, world):
    placement_create(key="autoplay", default_model=world.treatment)
    experiment_start(experiment=ab(world, "on-track-page", 1.0))
    autoplay = experiment_start(experiment=ab(world, "on-autoplay", 0.5, placement="autoplay"))
    assert layer_free_buckets("autoplay") == 5000  # a full track page takes nothing from autoplay
    found = assignments("autoplay")
    outside = next(u for u, v in found.items() if v is None)
    inside = next(u for u, v in found.items() if v is not None)

    body = client.get(URL, {"user": outside, "seed_track": world.tracks[0].pk, "placement": "autoplay"},
                      headers=world.headers).json()
    assert (body["placement"], body["experiment"], body["model_id"]) == ("autoplay", None, world.treatment.pk)
    body = client.get(URL, {"user": inside, "seed_track": world.tracks[0].pk, "placement": "autoplay", "k": 4},
                      headers=world.headers).json()
    assert body["experiment"] == autoplay.pk and body["placement"] == "autoplay"
    page = Page.objects.get(request_id=body["request_id"])
    assert (page.placement, page.experiment_id) == ("autoplay", autoplay.pk)
    body = client.get(URL, {"user": inside, "seed_track": world.tracks[0].pk}, headers=world.headers).json()
    assert body["placement"] == "track_page" and body["experiment"] != autoplay.pk
    assert Page.objects.get(request_id=body["request_id"]).placement == "track_page"


@pytest.mark.parametrize("placement, reason", [
    ("search_results", "unknown placement 'search_results'; choose one of track_page"),
    ("track page", "placement must be a placement key"),
    ("x" * 51, "placement must be a placement key"),
])
def test_an_unknown_or_malformed_placement_is_a_400_with_the_reason(client, world, placement, reason):
    response = client.get(URL, {"user": "u", "seed_track": world.tracks[0].pk, "placement": placement},
                          headers=world.headers)
    assert response.status_code == 400
    assert reason in response.json()["errors"]["placement"]
    assert EventOutbox.objects.count() == 0


def test_an_experiment_on_an_unknown_placement_is_refused(world):
    with pytest.raises(ExperimentError, match="unknown placement 'nowhere'"):
        ab(world, "lost", 0.1, placement="nowhere")


def test_choosing_the_arm_runs_no_sql_however_many_experiments_run(world):
    """The layer table lives in the cached serving configuration: after one load, assignments cost no query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for name, share in (("one", 0.3), ("two", 0.3), ("three", 0.4)):
        experiment_start(experiment=ab(world, name, share, arms=3))
    clear_serving_cache()
    with CaptureQueriesContext(connection) as loading:
        layer = serving_config().placements["track_page"]
    with CaptureQueriesContext(connection) as serving:
        held = Counter(serving_config().placements["track_page"].assign(u).experiment.name for u in USERS)
    assert len(loading) == 5 and len(serving) == 0  # five queries per refresh, none per request
    assert len(layer.experiments) == 3 and sum(held.values()) == len(USERS)
