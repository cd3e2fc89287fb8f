"""The simulated listener: how long a click is listened to, and the play events that report it."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from experiments.simulation.client import Recommendation, RecommendedItem
from experiments.simulation.runner import click_events, play_events
from experiments.simulation.taste import (
    TasteModel,
    choose_listens,
    click_probability,
    draw_seed_track,
    listen_rng,
    listened_seconds,
    make_population,
    relevance,
    session_rng,
    taste_fit,
)
from tests.experiments.test_simulation_model import tiny_catalog


def test_listened_seconds_follow_the_exponential_skip_model_cut_at_the_track_end():
    model = TasteModel()
    draws = listened_seconds(np.ones(40_000), np.random.default_rng(1), model)
    # E[min(T, Exp(m))] = m (1 - exp(-T / m)); P(>= 30 s) = exp(-30 / m), m = 240 s at a perfect fit
    assert draws.mean() == pytest.approx(240 * (1 - np.exp(-210 / 240)), rel=0.02)
    assert (draws >= 30).mean() == pytest.approx(np.exp(-30 / 240), abs=0.01)
    assert draws.max() == model.track_seconds and draws.min() >= 0
    half = listened_seconds(np.full(40_000, 0.5), np.random.default_rng(1), model)
    assert (half >= 30).mean() == pytest.approx(np.exp(-30 / 60), abs=0.01)
    assert (listened_seconds(np.full(1000, 0.1), np.random.default_rng(1), model) >= 30).mean() < 0.01
    same = listened_seconds([0.3, 0.9], np.random.default_rng(5), model)
    assert same.tolist() == listened_seconds([0.3, 0.9], np.random.default_rng(5), model).tolist()


def test_clickbait_neighbours_earn_clicks_but_short_listens():
    """A page that only shares the seed's instruments (other styles) vs one that shares its style: the first
    still gets clicked, but its listens are far shorter and more often skips (what the listening metrics
    exist for). Vectorised over 3,000 users: clicks by expectation, one listen draw per potential click."""
    catalog, model = tiny_catalog(), TasteModel()
    users = make_population(catalog, 3000, model, seed=11)
    rng = np.random.default_rng(2)
    expected_clicks, seconds = {"style": 0.0, "clickbait": 0.0}, {"style": [], "clickbait": []}
    for user in users:
        seed = draw_seed_track(user, catalog, session_rng(11, user, 0))
        pages = {
            "style": [t for t in catalog.tracks if t.style == seed.style and t.id != seed.id][:5],
            "clickbait": [t for t in catalog.tracks if t.ensemble == seed.ensemble and t.style != seed.style][:5],
        }
        for kind, page in pages.items():
            p = [click_probability(relevance(user, seed, t, model), pos, user.propensity, model)
                 for pos, t in enumerate(page, 1)]
            expected_clicks[kind] += sum(p)
            fits = np.array([taste_fit(user, t, model) for t in page])
            seconds[kind].append(listened_seconds(fits, rng, model))
    style, bait = np.concatenate(seconds["style"]), np.concatenate(seconds["clickbait"])
    assert expected_clicks["clickbait"] > 0.4 * expected_clicks["style"]  # clicked, though less
    assert bait.mean() < 0.6 * style.mean()  # measured: 48 s vs 101 s a listen
    skip_style, skip_bait = (style < 30).mean(), (bait < 30).mean()
    assert skip_bait > 0.5 and skip_style < 0.35 and skip_bait > skip_style + 0.2  # measured: 0.56 vs 0.26


def test_listens_are_drawn_per_clicked_track_deterministically_and_unknown_tracks_fit_nothing():
    catalog = tiny_catalog()
    user = make_population(catalog, 1, seed=3)[0]
    tracks = [catalog.tracks[0], None, catalog.tracks[5]]
    first = choose_listens(user, tracks, listen_rng(3, user, 0))
    assert first == choose_listens(user, tracks, listen_rng(3, user, 0)) and len(first) == 3
    assert first != choose_listens(user, tracks, listen_rng(3, user, 1))
    assert taste_fit(user, None) == 0.0 and choose_listens(user, [], listen_rng(3, user, 0)) == []
    assert all(0 <= taste_fit(user, t) <= 1 for t in catalog.tracks)


def test_play_events_follow_their_clicks_with_stable_ids_and_the_skip_flag():
    items = tuple(RecommendedItem(track=70 + p, position=p) for p in range(1, 5))
    rec = Recommendation(request_id=str(uuid.uuid4()), experiment=1, variant="treatment", model="m", items=items)
    plays = play_events(rec, [2, 4], [12.25, 30.0])
    assert [(e["type"], e["track"], e["position"], e["listened_seconds"], e["skipped"]) for e in plays] == [
        ("play", 72, 2, 12.25, True), ("play", 74, 4, 30.0, False)]
    assert [e["event_id"] for e in play_events(rec, [2, 4], [1.0, 1.0])] == [e["event_id"] for e in plays]
    assert not {e["event_id"] for e in plays} & {e["event_id"] for e in click_events(rec, [2, 4])}


def test_taste_model_rejects_bad_listening_parameters():
    with pytest.raises(ValueError, match="listen_mean_s"):
        TasteModel(listen_mean_s=0)
