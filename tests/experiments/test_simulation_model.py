"""The player simulator's pure parts: catalog parsing, taste, click model, schedule, drop policy."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import numpy as np
import pytest

from experiments.simulation.catalog import Catalog, CatalogTrack
from experiments.simulation.client import Recommendation, RecommendedItem
from experiments.simulation.runner import (
    DROP_BEFORE_FIRST_REQUEST,
    DropPolicy,
    Pacer,
    SimulationConfig,
    click_events,
    session_schedule,
)
from experiments.simulation.taste import (
    TasteModel,
    choose_clicks,
    click_probability,
    draw_seed_track,
    make_population,
    make_user,
    position_bias,
    relevance,
    session_rng,
)

STYLES = ("jig", "reel", "waltz", "chorale")
ENSEMBLES = ("fiddle", "piano", "flute+guitar")


def tiny_catalog() -> Catalog:
    tracks = [
        CatalogTrack(id=100 + i, style=STYLES[i % 4], ensemble=ENSEMBLES[(i // 4) % 3], tempo_bpm=80.0 + 5 * (i % 9))
        for i in range(48)
    ]
    return Catalog(tuple(tracks))


def test_catalog_from_api_rows_reads_labels_and_falls_back():
    catalog = Catalog.from_rows([
        {"id": 7, "title": "B", "labels": {"style": "reel", "ensemble": "fiddle+piano", "tempo_bpm": "112"}},
        {"id": 3, "title": "A", "labels": {"style": "jig", "instruments": ["piano", "fiddle"]}},
        {"id": 5, "title": "C", "labels": {}},
    ])
    assert [track.id for track in catalog.tracks] == [3, 5, 7]
    assert catalog.by_id[7] == CatalogTrack(id=7, style="reel", ensemble="fiddle+piano", tempo_bpm=112.0, title="B")
    assert catalog.by_id[3].ensemble == "fiddle+piano"  # from the sorted instrument list
    assert catalog.by_id[5].style == "unknown" and catalog.by_id[5].tempo_bpm is None
    assert catalog.styles == ("jig", "reel", "unknown")
    with pytest.raises(ValueError, match="empty"):
        Catalog(())


def test_relevance_orders_style_over_ensemble_over_neither():
    catalog = tiny_catalog()
    user = make_user(0, catalog, TasteModel(), seed=1)
    seed = CatalogTrack(id=1, style="jig", ensemble="fiddle", tempo_bpm=100.0)
    both = CatalogTrack(id=2, style="jig", ensemble="fiddle", tempo_bpm=100.0)
    style_only = CatalogTrack(id=3, style="jig", ensemble="piano", tempo_bpm=100.0)
    ensemble_only = CatalogTrack(id=4, style="reel", ensemble="fiddle", tempo_bpm=100.0)
    neither = CatalogTrack(id=5, style="reel", ensemble="piano", tempo_bpm=100.0)
    # Give the user a neutral standing taste so only the seed match differs.
    neutral = type(user)(**{**user.__dict__, "style_pref": dict.fromkeys(("jig", "reel"), 0.5),
                            "ensemble_pref": dict.fromkeys(("fiddle", "piano"), 0.5)})
    scores = [relevance(neutral, seed, item) for item in (both, style_only, ensemble_only, neither)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert all(0.0 <= score <= 1.0 for score in scores)
    # The user's own taste counts too: a loved style beats an unloved one at equal seed match.
    fan = type(user)(**{**neutral.__dict__, "style_pref": {"jig": 0.1, "reel": 0.9}})
    waltz_seed = CatalogTrack(id=8, style="waltz", ensemble="fiddle", tempo_bpm=100.0)
    loved, unloved = ensemble_only, CatalogTrack(id=9, style="jig", ensemble="fiddle", tempo_bpm=100.0)
    assert relevance(fan, waltz_seed, loved) > relevance(fan, waltz_seed, unloved)
    # Tempo: closer to the seed is more relevant, all else equal.
    near = CatalogTrack(id=6, style="jig", ensemble="fiddle", tempo_bpm=104.0)
    far = CatalogTrack(id=7, style="jig", ensemble="fiddle", tempo_bpm=170.0)
    assert relevance(neutral, seed, near) > relevance(neutral, seed, far)


def test_position_bias_is_one_at_the_top_and_strictly_decreasing():
    biases = [position_bias(p) for p in range(1, 21)]
    assert biases[0] == 1.0
    assert all(a > b for a, b in zip(biases, biases[1:], strict=False))
    assert position_bias(3) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        position_bias(0)


def test_click_probability_grows_with_relevance_and_falls_with_position():
    model = TasteModel(relevance_floor=0.1)
    assert click_probability(1.0, 1, 0.4, model) == pytest.approx(0.4)
    assert click_probability(0.0, 1, 0.4, model) == pytest.approx(0.04)
    by_relevance = [click_probability(r, 2, 0.3, model) for r in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(by_relevance, by_relevance[1:], strict=False))
    by_position = [click_probability(0.7, p, 0.3, model) for p in range(1, 11)]
    assert all(a > b for a, b in zip(by_position, by_position[1:], strict=False))
    assert click_probability(1.0, 1, 5.0, model) == 1.0  # clipped


def test_taste_model_rejects_bad_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        TasteModel(style_weight=0.9, ensemble_weight=0.3, tempo_weight=0.1)
    with pytest.raises(ValueError, match="seed_share"):
        TasteModel(seed_share=1.5)


def test_population_is_deterministic_by_seed_and_independent_of_size():
    catalog = tiny_catalog()
    first = make_population(catalog, 50, seed=11)
    again = make_population(catalog, 50, seed=11)
    other = make_population(catalog, 50, seed=12)
    assert first == again
    assert make_population(catalog, 80, seed=11)[:50] == first
    assert [u.style_pref for u in first] != [u.style_pref for u in other]
    assert len({u.user_id for u in first + other}) == 100  # a new seed is a new set of users
    for user in first:
        assert sum(user.style_pref.values()) == pytest.approx(1.0)
        assert 0.0 < user.propensity < 1.0 and user.sessions >= 1 and 0.0 <= user.drop_draw < 1.0


def test_users_differ_in_taste_and_activity():
    users = make_population(tiny_catalog(), 2000, seed=5)
    sessions = np.array([user.sessions for user in users])
    favourite = Counter(max(user.style_pref, key=user.style_pref.get) for user in users)
    assert 3.0 < sessions.mean() < 5.0 and sessions.max() >= 15 and (sessions == 1).mean() > 0.1
    assert set(favourite) == set(STYLES) and min(favourite.values()) > 300
    # Peaked tastes: the favourite style carries most of the mass for a typical user.
    assert np.median([max(user.style_pref.values()) for user in users]) > 0.5
    assert np.std([user.propensity for user in users]) > 0.05


def test_seed_tracks_follow_the_users_taste():
    catalog = tiny_catalog()
    user = make_user(3, catalog, TasteModel(), seed=2)
    user = type(user)(**{**user.__dict__, "style_pref": {"jig": 0.8, "reel": 0.2, "waltz": 0.0, "chorale": 0.0}})
    rng = np.random.default_rng(0)
    drawn = Counter(draw_seed_track(user, catalog, rng).style for _ in range(2000))
    assert set(drawn) == {"jig", "reel"}
    assert 0.75 < drawn["jig"] / 2000 < 0.85


def test_clicks_are_deterministic_and_favour_relevant_pages():
    catalog = tiny_catalog()
    users = make_population(catalog, 400, seed=9)
    seed_of = {user.index: draw_seed_track(user, catalog, session_rng(9, user, 0)) for user in users}

    def clicks(page_kind: str) -> int:
        total = 0
        for user in users:
            seed = seed_of[user.index]
            if page_kind == "same_style":
                page = [t for t in catalog.tracks if t.style == seed.style and t.id != seed.id][:10]
            else:
                page = [t for t in catalog.tracks if t.style != seed.style][:10]
            total += len(choose_clicks(user, seed, list(enumerate(page, 1)), session_rng(9, user, 1)))
        return total

    assert clicks("same_style") == clicks("same_style")  # same generators, same decisions
    assert clicks("same_style") > 1.3 * clicks("other_style")
    # Unknown tracks get only the relevance floor.
    user = users[0]
    rng = np.random.default_rng(3)
    unknown = sum(len(choose_clicks(user, seed_of[0], [(1, None)], rng)) for _ in range(3000))
    assert unknown / 3000 == pytest.approx(user.propensity * TasteModel().relevance_floor, abs=0.015)


def test_session_schedule_is_seeded_complete_and_keeps_each_users_order():
    users = make_population(tiny_catalog(), 200, seed=4)
    schedule = session_schedule(users, seed=4)
    assert schedule == session_schedule(users, seed=4)
    assert schedule != session_schedule(users, seed=5)
    assert len(schedule) == sum(user.sessions for user in users)
    seen: dict[int, int] = {}
    for index, session in schedule:
        assert session == seen.get(index, 0)
        seen[index] = session + 1
    # Interleaved, not user after user: the first tenth already reaches many users.
    assert len({index for index, _ in schedule[: len(schedule) // 10]}) > 50


def test_drop_policy_drops_the_chosen_fraction_of_one_arm_only():
    users = make_population(tiny_catalog(), 4000, seed=6)
    policy = DropPolicy(arm="treatment", fraction=0.3)
    dropped = [user for user in users if policy.vanishes_after_first_request(user, "treatment")]
    assert 0.27 < len(dropped) / len(users) < 0.33
    assert not any(policy.vanishes_after_first_request(user, "control") for user in users)
    assert not any(policy.vanishes_after_first_request(user, None) for user in users)
    assert dropped == [user for user in users if policy.vanishes_after_first_request(user, "treatment")]
    assert not any(DropPolicy(arm="treatment", fraction=0.0).vanishes(u, "treatment") for u in users)
    assert all(DropPolicy(arm="treatment", fraction=1.0).vanishes(u, "treatment") for u in users)
    assert not policy.vanishes_before_first_request(users[0])  # the after-first-request kind never drops early
    with pytest.raises(ValueError):
        DropPolicy(arm="treatment", fraction=1.5)


def test_drop_before_first_request_needs_and_uses_the_arm_in_advance():
    users = make_population(tiny_catalog(), 2000, seed=8)
    with pytest.raises(ValueError, match="arm_of"):
        DropPolicy(arm="treatment", fraction=0.5, when=DROP_BEFORE_FIRST_REQUEST)

    def arm_of(user_id: str) -> str:
        return "treatment" if int(user_id.rsplit("-", 1)[1]) % 2 else "control"

    policy = DropPolicy(arm="treatment", fraction=0.5, when=DROP_BEFORE_FIRST_REQUEST, arm_of=arm_of)
    dropped = [user for user in users if policy.vanishes_before_first_request(user)]
    assert all(arm_of(user.user_id) == "treatment" for user in dropped)
    assert 0.45 < len(dropped) / 1000 < 0.55
    assert not any(policy.vanishes_after_first_request(user, "treatment") for user in users)


def test_config_validation():
    with pytest.raises(ValueError):
        SimulationConfig(users=0, rate=10, duration_s=1)
    with pytest.raises(ValueError):
        SimulationConfig(users=10, rate=0, duration_s=1)
    with pytest.raises(ValueError):
        SimulationConfig(users=10, rate=10, duration_s=1, k=0)


def test_pacer_spaces_requests_to_the_rate_across_threads():
    pacer = Pacer(rate=400.0)
    deadline = time.monotonic() + 10
    started = time.monotonic()
    granted = []

    def take(n: int) -> None:
        for _ in range(n):
            if pacer.wait(deadline):
                granted.append(time.monotonic())

    threads = [threading.Thread(target=take, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert len(granted) == 100
    assert 0.22 < elapsed < 0.6  # 100 slots at 400/s = 0.25 s
    assert not Pacer(rate=1.0).wait(time.monotonic() - 1)  # a slot after the deadline is refused


def test_click_event_ids_are_unique_per_request_and_position_and_stable():
    items = tuple(RecommendedItem(track=50 + p, position=p, score=0.9) for p in range(1, 6))
    first = Recommendation(request_id=str(uuid.uuid4()), experiment=1, variant="control", model="m", items=items)
    again = Recommendation(request_id=first.request_id, experiment=1, variant="control", model="m", items=items)
    other = Recommendation(request_id=str(uuid.uuid4()), experiment=1, variant="control", model="m", items=items)
    events = click_events(first, [1, 3, 5])
    assert [e["track"] for e in events] == [51, 53, 55] and [e["position"] for e in events] == [1, 3, 5]
    assert all(e["type"] == "click" and e["request_id"] == first.request_id for e in events)
    assert len({e["event_id"] for e in events}) == 3
    # The same click made twice (a retried batch, a rerun's bookkeeping) keeps its id ...
    assert [e["event_id"] for e in click_events(again, [1, 3, 5])] == [e["event_id"] for e in events]
    # ... while the same positions of another answer never collide, whatever the seed was.
    assert not {e["event_id"] for e in click_events(other, [1, 3, 5])} & {e["event_id"] for e in events}
