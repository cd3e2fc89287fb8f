"""The vectorised Monte Carlo is the simulator's click model: the same probabilities as ``taste``, the same pages as
``team_draft``, and a world read from label dicts as the HTTP simulator reads them."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.simulation.catalog import CatalogTrack
from experiments.simulation.monte_carlo import (
    click_probabilities,
    draft_table,
    draw_population,
    synthetic_ranker,
    synthetic_world,
    world_from_labels,
)
from experiments.simulation.taste import TasteModel, UserProfile, click_probability, relevance
from experiments.team_draft import team_draft


def test_click_probabilities_equal_the_taste_model():
    labels = [{"style": s, "ensemble": e, "tempo_bpm": t} for s, e, t in
              [("reel", "fiddle", 110), ("jig", "fiddle", None), ("reel", "piano", 90), ("chorale", "organ", 60),
               ("jig", "piano", 120), ("chorale", "fiddle", None)]]
    world = world_from_labels(labels)
    rng = np.random.default_rng(0)
    pop = draw_population(world, users=5, sims=1, rng=rng)
    items = rng.integers(world.n_tracks, size=(pop.page_user.size, 3))
    p = click_probabilities(world, pop, items)
    styles, ensembles = sorted({r["style"] for r in labels}), sorted({r["ensemble"] for r in labels})
    tracks = [CatalogTrack(i, r["style"], r["ensemble"], r["tempo_bpm"]) for i, r in enumerate(labels)]
    model = TasteModel()
    for page in range(pop.page_user.size):
        u = pop.page_user[page]
        tempo = None if np.isnan(pop.tempo_center[u]) else float(pop.tempo_center[u])
        user = UserProfile(u, "u", dict(zip(styles, pop.style_pref[u], strict=True)),
                           dict(zip(ensembles, pop.ensemble_pref[u], strict=True)), tempo, float(pop.propensity[u]),
                           1, 0.0)
        seed = tracks[pop.page_seed[page]]
        for position, item in enumerate(items[page], start=1):
            expected = click_probability(relevance(user, seed, tracks[item], model), position, user.propensity, model)
            assert p[page, position - 1] == pytest.approx(expected, abs=1e-12)


def test_draft_table_holds_every_page_team_draft_makes():
    world = synthetic_world(n_tracks=60, seed=1)
    a, b = synthetic_ranker(world, 0.3, 0.3, k=6, seed=1), synthetic_ranker(world, 0.8, 0.3, k=6, seed=2)
    table = draft_table(a, b)
    assert table.patterns == 8
    for seed in (0, 17, 59):
        for pattern in range(8):
            coins = [bool((pattern >> r) & 1) for r in range(3)]
            draft = team_draft(a[seed].tolist(), b[seed].tolist(), 6, coins)
            assert table.tracks[seed, pattern].tolist() == draft.items(a[seed].tolist(), b[seed].tolist())
            assert tuple(table.teams[seed, pattern]) == draft.teams


def test_world_from_labels_reads_like_the_http_simulator():
    world = world_from_labels([{"style": "reel", "instruments": ["piano", "fiddle"]}, {}, {"tempo_bpm": "fast"}])
    assert world.n_tracks == 3 and world.n_styles == 2 and world.n_ensembles == 2
    assert np.isnan(world.tempo).all()
