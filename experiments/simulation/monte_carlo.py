"""Vectorised Monte Carlo of A/B and interleaving experiments with the simulator's click model (numpy only).

The HTTP simulator (``runner``) plays users one request at a time against a live platform; this
module plays thousands of whole experiments in numpy to measure what the statistics promise:
A/A false-positive rates, power, and how many users an interleaving experiment needs compared
with a user-randomised A/B test of CTR for the same pair of rankers on the same population.

A *world* is a catalog (style, ensemble, tempo per track) plus, per ranker, its top-k neighbour
list of every track (``lists[name]``: track indices, best first, the seed left out): the lists of
real models (read from the platform's index, ``bench/interleaving_power.py``) or of synthetic
rankers (``synthetic_ranker``: a mix of style and ensemble similarity plus noise). The users and
clicks follow ``taste.TasteModel``: the same relevance (style, ensemble, tempo; seed and standing
taste), position bias 1 / log2(1 + p) and Beta propensities. Two simplifications keep it
vectorised: a user's number of pages is drawn up front (sessions x requests, not stopped by their
clicks), and a session's seed is a track of a style the user likes, uniform within the style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats.interleaving import InterleavingStatistic
from experiments.stats.statistics import RatioStatistic
from experiments.team_draft import TEAM_B, rounds_for, team_draft

from .taste import TasteModel


@dataclass(frozen=True)
class World:
    style: np.ndarray  # int [tracks]
    ensemble: np.ndarray  # int [tracks]
    tempo: np.ndarray  # float [tracks] (bpm); nan where unknown
    model: TasteModel = TasteModel()
    requests_per_session: float = 2.0  # mean; 1 + Poisson(mean - 1), capped at model.max_requests_per_session

    @property
    def n_tracks(self) -> int:
        return int(self.style.size)

    @property
    def n_styles(self) -> int:
        return int(self.style.max()) + 1

    @property
    def n_ensembles(self) -> int:
        return int(self.ensemble.max()) + 1


def synthetic_world(n_tracks: int = 800, n_styles: int = 16, n_ensembles: int = 10, seed: int = 0,
                    model: TasteModel | None = None) -> World:
    """A catalog whose styles and ensembles overlap (each style is played by a few ensembles), like the demo's."""
    rng = np.random.default_rng([seed, 11])
    style = rng.integers(n_styles, size=n_tracks)
    # each style favours 3 ensembles, so ensemble says something about style but not everything
    favoured = rng.integers(n_ensembles, size=(n_styles, 3))
    ensemble = np.where(rng.random(n_tracks) < 0.7, favoured[style, rng.integers(3, size=n_tracks)],
                        rng.integers(n_ensembles, size=n_tracks))
    style_tempo = rng.uniform(60, 170, size=n_styles)
    tempo = np.clip(style_tempo[style] + rng.normal(0, 15, size=n_tracks), 40, 220)
    return World(style=style, ensemble=ensemble, tempo=tempo, model=model or TasteModel())


def synthetic_ranker(world: World, style_weight: float, noise: float, k: int = 10, seed: int = 0) -> np.ndarray:
    """Top-k lists of a ranker that scores  w [same style] + (1 - w) [same ensemble] + noise N(0, 1) per pair.

    ``style_weight`` near 1: a text-informed model (neighbours share the seed's style); near 0: an
    audio-only one (neighbours share its instruments). The noise is the ranker's own (its seed)."""
    rng = np.random.default_rng([seed, 23])
    same_style = world.style[:, None] == world.style[None, :]
    same_ensemble = world.ensemble[:, None] == world.ensemble[None, :]
    score = style_weight * same_style + (1 - style_weight) * same_ensemble + noise * rng.normal(
        size=(world.n_tracks, world.n_tracks))
    np.fill_diagonal(score, -np.inf)
    return np.argsort(-score, axis=1, kind="stable")[:, :k]


@dataclass(frozen=True)
class DraftTable:
    """Every page team draft can make from two rankers' lists: per seed track and per coin pattern."""

    tracks: np.ndarray  # int [tracks, patterns, k]
    teams: np.ndarray  # int [tracks, patterns, k] (TEAM_A / TEAM_B)

    @property
    def patterns(self) -> int:
        return self.tracks.shape[1]


def draft_table(list_a: np.ndarray, list_b: np.ndarray) -> DraftTable:
    """``team_draft`` of both lists for each seed and each of the 2^rounds coin patterns (k = list width)."""
    n, k = list_a.shape
    rounds = rounds_for(k)
    patterns = [tuple(bool((p >> r) & 1) for r in range(rounds)) for p in range(2 ** rounds)]
    tracks = np.empty((n, len(patterns), k), dtype=np.int64)
    teams = np.empty((n, len(patterns), k), dtype=np.int8)
    for seed in range(n):
        a, b = list_a[seed].tolist(), list_b[seed].tolist()
        for j, coins in enumerate(patterns):
            draft = team_draft(a, b, k, coins)
            tracks[seed, j] = draft.items(a, b)
            teams[seed, j] = draft.teams
    return DraftTable(tracks, teams)


@dataclass(frozen=True)
class Population:
    """Users of ``sims`` experiments at once (user u belongs to experiment u // users) and their pages."""

    sims: int
    users: int
    style_pref: np.ndarray  # [U, styles], rows sum to 1
    ensemble_pref: np.ndarray  # [U, ensembles]
    tempo_center: np.ndarray  # [U]
    propensity: np.ndarray  # [U]
    page_user: np.ndarray  # [P] user index of each page
    page_seed: np.ndarray  # [P] seed track of each page


def draw_population(world: World, users: int, sims: int, rng: np.random.Generator) -> Population:
    m = world.model
    n = users * sims
    style_pref = rng.dirichlet(np.full(world.n_styles, m.style_concentration), size=n)
    ensemble_pref = rng.dirichlet(np.full(world.n_ensembles, m.ensemble_concentration), size=n)
    known = world.tempo[~np.isnan(world.tempo)]
    tempo_center = known[rng.integers(known.size, size=n)] if known.size else np.full(n, np.nan)
    a, b = m.propensity_mean * m.propensity_strength, (1 - m.propensity_mean) * m.propensity_strength
    propensity = rng.beta(a, b, size=n)
    activity = rng.lognormal(-0.5 * m.activity_sigma**2, m.activity_sigma, size=n)
    sessions = 1 + rng.poisson((m.mean_sessions - 1) * activity)
    pages = np.zeros(n, dtype=np.int64)
    most = int(sessions.max())
    for s in range(most):  # requests per session, summed over each user's sessions
        requests = np.minimum(1 + rng.poisson(world.requests_per_session - 1, size=n), m.max_requests_per_session)
        pages += np.where(s < sessions, requests, 0)
    page_user = np.repeat(np.arange(n), pages)
    # a style the user likes (inverse CDF of their preference), then a track of that style, uniformly
    cumulative = np.cumsum(style_pref[page_user], axis=1)
    style = np.minimum((rng.random(page_user.size)[:, None] > cumulative).sum(axis=1), world.n_styles - 1)
    order = np.argsort(world.style, kind="stable")
    counts = np.bincount(world.style, minlength=world.n_styles)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    style = np.where(counts[style] > 0, style, world.style[order[0]])
    seed = order[starts[style] + (rng.random(page_user.size) * counts[style]).astype(np.int64)]
    return Population(sims, users, style_pref, ensemble_pref, tempo_center, propensity, page_user, seed)


def _closeness(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Gaussian closeness of tempos; 0.5 where either is unknown (as ``taste._tempo_closeness``)."""
    with np.errstate(invalid="ignore"):
        close = np.exp(-0.5 * ((a - b) / width) ** 2)
    return np.where(np.isnan(close), 0.5, close)


def world_from_labels(labels: list[dict], model: TasteModel | None = None) -> World:
    """A world from tracks' label dicts (``style``, ``ensemble`` or ``instruments``, ``tempo_bpm``), as
    ``catalog.CatalogTrack.from_api`` reads them; missing labels become "unknown" / nan."""
    def code(values: list[str]) -> np.ndarray:
        names = {name: i for i, name in enumerate(sorted(set(values)))}
        return np.array([names[v] for v in values], dtype=np.int64)

    styles, ensembles, tempos = [], [], []
    for row in labels:
        row = row or {}
        styles.append(str(row.get("style") or "unknown"))
        ensemble = row.get("ensemble") or ("+".join(sorted(map(str, row["instruments"])))
                                           if row.get("instruments") else "unknown")
        ensembles.append(str(ensemble))
        try:
            tempos.append(float(row["tempo_bpm"]) if row.get("tempo_bpm") is not None else np.nan)
        except (TypeError, ValueError):
            tempos.append(np.nan)
    return World(style=code(styles), ensemble=code(ensembles), tempo=np.array(tempos, dtype=float),
                 model=model or TasteModel())


def click_probabilities(world: World, pop: Population, items: np.ndarray) -> np.ndarray:
    """P(click) of each shown item [P, k]: ``taste.click_probability`` of ``taste.relevance``, vectorised."""
    m = world.model
    s = m.seed_share
    user, seed = pop.page_user[:, None], pop.page_seed[:, None]
    item_style, item_ensemble = world.style[items], world.ensemble[items]
    style_pref = pop.style_pref[user, item_style] / pop.style_pref.max(axis=1)[user]
    ensemble_pref = pop.ensemble_pref[user, item_ensemble] / pop.ensemble_pref.max(axis=1)[user]
    width = m.tempo_width_bpm
    tempo_seed = _closeness(world.tempo[items], world.tempo[seed], width)
    tempo_user = _closeness(world.tempo[items], pop.tempo_center[user], width)
    rel = (m.style_weight * (s * (item_style == world.style[seed]) + (1 - s) * style_pref)
           + m.ensemble_weight * (s * (item_ensemble == world.ensemble[seed]) + (1 - s) * ensemble_pref)
           + m.tempo_weight * (s * tempo_seed + (1 - s) * tempo_user))
    bias = 1.0 / np.log2(1.0 + np.arange(1, items.shape[1] + 1))
    p = pop.propensity[user] * bias[None, :] * (m.relevance_floor + (1 - m.relevance_floor) * rel)
    return np.clip(p, 0.0, 1.0)


def _per_user(pop: Population, values: np.ndarray) -> np.ndarray:
    """Sum per user of a per-page value -> [sims, users]."""
    total = np.bincount(pop.page_user, weights=values, minlength=pop.sims * pop.users)
    return total.reshape(pop.sims, pop.users)


def ab_experiments(world: World, list_a: np.ndarray, list_b: np.ndarray, users: int, sims: int,
                   rng: np.random.Generator, expected: bool = False) -> tuple[RatioStatistic, RatioStatistic]:
    """``sims`` user-randomised A/B tests of CTR (users split at random): per-arm statistics, arrays over sims.

    ``expected=True`` counts expected clicks (the probabilities) instead of drawn ones: the true CTRs."""
    pop = draw_population(world, users, sims, rng)
    arm_b = rng.random(users * sims) < 0.5
    page_b = arm_b[pop.page_user]
    items = np.where(page_b[:, None], list_b[pop.page_seed], list_a[pop.page_seed])
    p = click_probabilities(world, pop, items)
    clicks = (p if expected else (rng.random(p.shape) < p)).sum(axis=1)
    clicks_u = _per_user(pop, clicks)
    shown_u = _per_user(pop, np.full(clicks.shape, items.shape[1], dtype=float))
    in_b = arm_b.reshape(sims, users)
    return _masked_ratio(clicks_u, shown_u, ~in_b), _masked_ratio(clicks_u, shown_u, in_b)


def _masked_ratio(m: np.ndarray, d: np.ndarray, mask: np.ndarray) -> RatioStatistic:
    m, d = m * mask, d * mask
    return RatioStatistic(n=mask.sum(axis=-1), sum_m=m.sum(axis=-1), sum_d=d.sum(axis=-1), sum_m2=(m * m).sum(axis=-1),
                          sum_d2=(d * d).sum(axis=-1), sum_md=(m * d).sum(axis=-1))


@dataclass(frozen=True)
class InterleavingRun:
    statistic: InterleavingStatistic  # arrays over sims
    slots_b: np.ndarray  # [sims, k] pages where team B held each position
    clicks_a: np.ndarray  # [sims, k] clicks credited to A at each position
    clicks_b: np.ndarray  # [sims, k]
    pages: np.ndarray  # [sims]
    users: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # per user [sims, users]: a, b, pages, a_first


def interleaving_experiments(world: World, table: DraftTable, users: int, sims: int, rng: np.random.Generator,
                             expected: bool = False) -> InterleavingRun:
    """``sims`` interleaving experiments: every user sees team-draft pages, clicks credit the item's team."""
    pop = draw_population(world, users, sims, rng)
    pattern = rng.integers(table.patterns, size=pop.page_user.size)
    items = table.tracks[pop.page_seed, pattern]
    is_b = table.teams[pop.page_seed, pattern] == TEAM_B
    p = click_probabilities(world, pop, items)
    clicks = p if expected else (rng.random(p.shape) < p).astype(float)
    b = _per_user(pop, (clicks * is_b).sum(axis=1))
    a = _per_user(pop, (clicks * ~is_b).sum(axis=1))
    pages = _per_user(pop, np.ones(pop.page_user.size))
    a_first = _per_user(pop, (~is_b[:, 0]).astype(float))
    statistic = InterleavingStatistic.from_users(a, b, pages, a_first)
    sim_of_page = pop.page_user // users
    k = items.shape[1]

    def per_sim_position(values: np.ndarray) -> np.ndarray:
        flat = (sim_of_page[:, None] * k + np.arange(k)[None, :]).ravel()
        return np.bincount(flat, weights=values.ravel().astype(float), minlength=sims * k).reshape(sims, k)

    return InterleavingRun(statistic, per_sim_position(is_b), per_sim_position(clicks * ~is_b),
                           per_sim_position(clicks * is_b), pages.sum(axis=1), (a, b, pages, a_first))


@dataclass(frozen=True)
class TrueEffects:
    """What an infinitely large experiment would find, on one population shown both rankers (common numbers)."""

    ctr_a: float
    ctr_b: float
    share_b: float  # expected share of B credits under team draft (every coin pattern, equally likely)

    @property
    def lift(self) -> float:
        return self.ctr_b / self.ctr_a - 1


def true_effects(world: World, list_a: np.ndarray, list_b: np.ndarray, table: DraftTable, users: int,
                 rng: np.random.Generator) -> TrueEffects:
    """Expected clicks (probabilities, no draws) of the same users and pages under A, under B, and interleaved."""
    pop = draw_population(world, users, 1, rng)
    ctr_a = float(click_probabilities(world, pop, list_a[pop.page_seed]).mean())
    ctr_b = float(click_probabilities(world, pop, list_b[pop.page_seed]).mean())
    credits_a = credits_b = 0.0
    for pattern in range(table.patterns):
        p = click_probabilities(world, pop, table.tracks[pop.page_seed, pattern])
        is_b = table.teams[pop.page_seed, pattern] == TEAM_B
        credits_b += float((p * is_b).sum())
        credits_a += float((p * ~is_b).sum())
    return TrueEffects(ctr_a, ctr_b, credits_b / (credits_a + credits_b))


def reference_rankers(world: World, k: int = 10) -> dict[str, np.ndarray]:
    """The synthetic rankers the tests and docs/interleaving.md compare (top-k lists of every track).

    A baseline that weighs instruments more, CrossMuSim (style first) and a second training seed of it, and
    two ablations: noisier descriptions, and text that names no label (style counts a little less)."""
    return {
        "baseline": synthetic_ranker(world, 0.55, 0.3, k, seed=1),
        "crossmusim": synthetic_ranker(world, 0.8, 0.3, k, seed=2),
        "crossmusim_seed2": synthetic_ranker(world, 0.8, 0.3, k, seed=3),
        "noisy_text": synthetic_ranker(world, 0.8, 0.35, k, seed=4),
        "label_free": synthetic_ranker(world, 0.65, 0.3, k, seed=5),
    }
