"""The latent-taste click model: who the users are, what they start from, and what they click.

A user's taste is a preference distribution over styles (peaked: most listeners love one or
two styles), a weaker one over ensembles (the timbre), and a preferred tempo. The chance that
a shown track is clicked grows with its relevance to the user's taste *and* to the session's
seed track — style match dominant, ensemble match weaker — and falls with the position it is
shown at (position bias ``1 / log2(1 + position)``, the DCG discount).

After a click the user listens. How long depends on how well the track fits the user's
standing taste (style, ensemble, tempo; not the session's seed): the time to skip is
exponential with a mean that grows with the fit, cut at the track's end. A neighbour that only
shares the seed's instruments (a clickbait-like item: it looks right on the page) still earns
some clicks, but its listens are short; a listen under 30 s is a skip.

This is the ground truth the A/B test should recover: a recommender whose neighbours share
the seed's style earns more clicks, and more and longer listens, than one whose neighbours
only share its instruments.
Every random draw comes from a generator seeded by ``(seed, user, session)``, so a user's
taste and decisions do not depend on thread timing or on how many other users there are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .catalog import Catalog, CatalogTrack

# Streams of the seed sequence, so that taste draws and session draws never share numbers.
_TASTE_STREAM = 0
_SESSION_STREAM = 1
_LISTEN_STREAM = 3  # listens have their own numbers: adding them left every click decision as it was


@dataclass(frozen=True)
class TasteModel:
    """Parameters of the population and of the click model (defaults give a CTR of ~10%)."""

    style_weight: float = 0.6
    ensemble_weight: float = 0.25
    tempo_weight: float = 0.15
    seed_share: float = 0.5  # part of relevance from matching the seed, the rest from the user's standing taste
    style_concentration: float = 0.3  # Dirichlet alpha: small = users love few styles
    ensemble_concentration: float = 0.6
    tempo_width_bpm: float = 20.0
    relevance_floor: float = 0.05  # even an irrelevant track gets the odd curious click
    propensity_mean: float = 0.35  # click chance at position 1 for a perfectly relevant track, averaged over users
    propensity_strength: float = 8.0  # Beta(a + b): larger = users more alike
    mean_sessions: float = 4.0
    activity_sigma: float = 1.0  # log-normal spread of activity: a few heavy users, many light ones
    continue_after_click: float = 0.6
    continue_without_click: float = 0.25
    max_requests_per_session: int = 6
    # Listening after a click: time to skip ~ Exponential(mean = listen_mean_s * max(fit, fit_floor) ** fit_power),
    # cut at track_seconds (a full piece: the demo's audio files are excerpts of it); >= long_listen_s is a stream.
    # With these, P(stream) is 0.88 at a perfect fit, 0.61 at 0.5, 0.25 at 0.3 and ~0 below 0.15.
    listen_mean_s: float = 240.0
    fit_power: float = 2.0
    fit_floor: float = 0.02
    track_seconds: float = 210.0
    long_listen_s: float = 30.0

    def __post_init__(self) -> None:
        weights = (self.style_weight, self.ensemble_weight, self.tempo_weight)
        if min(weights) < 0 or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            raise ValueError(f"relevance weights must be >= 0 and sum to 1, got {weights}")
        for name in ("seed_share", "relevance_floor", "propensity_mean", "continue_after_click",
                     "continue_without_click"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.mean_sessions < 1 or self.max_requests_per_session < 1:
            raise ValueError("mean_sessions and max_requests_per_session must be >= 1")
        if min(self.listen_mean_s, self.fit_power, self.fit_floor, self.track_seconds) <= 0:
            raise ValueError("listen_mean_s, fit_power, fit_floor and track_seconds must be > 0")


@dataclass(frozen=True)
class UserProfile:
    """One simulated listener: latent taste, activity and baseline propensity to click."""

    index: int
    user_id: str
    style_pref: dict[str, float]  # sums to 1 over the catalog's styles
    ensemble_pref: dict[str, float]  # sums to 1 over the catalog's ensembles
    tempo_center: float | None
    propensity: float
    sessions: int
    drop_draw: float  # uniform(0, 1) drawn once: the user vanishes in a dropped arm when below the fraction

    def style_affinity(self, style: str) -> float:
        """Preference for a style relative to the user's favourite (1 = favourite)."""
        return self.style_pref.get(style, 0.0) / max(self.style_pref.values())

    def ensemble_affinity(self, ensemble: str) -> float:
        return self.ensemble_pref.get(ensemble, 0.0) / max(self.ensemble_pref.values())


def rng_for(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """An independent generator for one (seed, stream, user[, session]) — stable across runs and threads."""
    return np.random.default_rng([int(seed), stream, *map(int, keys)])


def make_user(index: int, catalog: Catalog, model: TasteModel, seed: int, prefix: str = "sim") -> UserProfile:
    """Draw user ``index``'s taste; the same (seed, index) always gives the same user."""
    rng = rng_for(seed, _TASTE_STREAM, index)
    styles, ensembles = catalog.styles, catalog.ensembles
    style_p = rng.dirichlet(np.full(len(styles), model.style_concentration))
    ensemble_p = rng.dirichlet(np.full(len(ensembles), model.ensemble_concentration))
    tempos = catalog.tempos
    tempo_center = float(tempos[rng.integers(len(tempos))]) if tempos else None
    a = model.propensity_mean * model.propensity_strength
    b = (1.0 - model.propensity_mean) * model.propensity_strength
    propensity = float(rng.beta(a, b)) if 0 < model.propensity_mean < 1 else model.propensity_mean
    activity = rng.lognormal(-0.5 * model.activity_sigma**2, model.activity_sigma)
    sessions = 1 + int(rng.poisson((model.mean_sessions - 1.0) * activity))
    return UserProfile(
        index=index,
        user_id=f"{prefix}-{seed}-{index:07d}",
        style_pref=dict(zip(styles, map(float, style_p), strict=True)),
        ensemble_pref=dict(zip(ensembles, map(float, ensemble_p), strict=True)),
        tempo_center=tempo_center,
        propensity=propensity,
        sessions=sessions,
        drop_draw=float(rng.random()),
    )


def make_population(
    catalog: Catalog, n_users: int, model: TasteModel | None = None, seed: int = 0, prefix: str = "sim"
) -> list[UserProfile]:
    """``n_users`` users; user i is the same whatever ``n_users`` is."""
    model = model or TasteModel()
    return [make_user(index, catalog, model, seed, prefix) for index in range(n_users)]


def position_bias(position: int) -> float:
    """Examination probability at a 1-based position: ``1 / log2(1 + position)`` (1 at the top)."""
    if position < 1:
        raise ValueError(f"positions are 1-based, got {position}")
    return 1.0 / math.log2(1.0 + position)


def _tempo_closeness(a: float | None, b: float | None, width: float) -> float:
    """Gaussian closeness of two tempos; 0.5 when either is unknown (no evidence either way)."""
    if a is None or b is None:
        return 0.5
    return math.exp(-0.5 * ((a - b) / width) ** 2)


def relevance(user: UserProfile, seed: CatalogTrack, item: CatalogTrack, model: TasteModel | None = None) -> float:
    """How much ``user``, listening from ``seed``, wants ``item``: a number in [0, 1].

    ``relevance = ws * style + we * ensemble + wt * tempo`` where each part mixes the match with
    the seed (share ``seed_share``) and the user's standing affinity (the rest):
    ``style = s * [item.style == seed.style] + (1 - s) * affinity(item.style)``.
    """
    model = model or TasteModel()
    s = model.seed_share
    style = s * float(item.style == seed.style) + (1 - s) * user.style_affinity(item.style)
    ensemble = s * float(item.ensemble == seed.ensemble) + (1 - s) * user.ensemble_affinity(item.ensemble)
    tempo = s * _tempo_closeness(item.tempo_bpm, seed.tempo_bpm, model.tempo_width_bpm) + (1 - s) * _tempo_closeness(
        item.tempo_bpm, user.tempo_center, model.tempo_width_bpm
    )
    return model.style_weight * style + model.ensemble_weight * ensemble + model.tempo_weight * tempo


def click_probability(rel: float, position: int, propensity: float, model: TasteModel | None = None) -> float:
    """``P(click) = propensity * bias(position) * (floor + (1 - floor) * relevance)``, in [0, 1]."""
    model = model or TasteModel()
    floor = model.relevance_floor
    p = propensity * position_bias(position) * (floor + (1.0 - floor) * rel)
    return min(1.0, max(0.0, p))


def draw_seed_track(user: UserProfile, catalog: Catalog, rng: np.random.Generator) -> CatalogTrack:
    """A session's starting track: a style from the user's taste, then a track of that style
    weighted (softly) by the user's ensemble preference."""
    styles = list(user.style_pref)
    p = np.array([user.style_pref[style] for style in styles])
    style = styles[int(rng.choice(len(styles), p=p / p.sum()))]
    candidates = catalog.by_style[style]
    weights = np.array([0.1 + user.ensemble_affinity(track.ensemble) for track in candidates])
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def choose_clicks(
    user: UserProfile,
    seed: CatalogTrack,
    shown: Sequence[tuple[int, CatalogTrack | None]],
    rng: np.random.Generator,
    model: TasteModel | None = None,
) -> list[int]:
    """The positions the user clicks among ``shown`` = [(position, track or None if unknown)].

    Each item is clicked independently with :func:`click_probability`; a track the catalog
    does not know gets the relevance floor only. One uniform draw per item, in order, so the
    decisions are a pure function of the generator state and the page.
    """
    model = model or TasteModel()
    clicked = []
    for position, track in shown:
        rel = relevance(user, seed, track, model) if track is not None else 0.0
        if rng.random() < click_probability(rel, position, user.propensity, model):
            clicked.append(position)
    return clicked


def session_rng(seed: int, user: UserProfile, session: int) -> np.random.Generator:
    return rng_for(seed, _SESSION_STREAM, user.index, session)


def listen_rng(seed: int, user: UserProfile, session: int) -> np.random.Generator:
    return rng_for(seed, _LISTEN_STREAM, user.index, session)


def taste_fit(user: UserProfile, item: CatalogTrack | None, model: TasteModel | None = None) -> float:
    """How well ``item`` fits the user's standing taste, whatever the session's seed: a number in [0, 1].

    ``fit = ws * affinity(style) + we * affinity(ensemble) + wt * closeness(tempo, the user's tempo)``, the weights
    of :func:`relevance`. A track the catalog does not know fits nothing (0)."""
    if item is None:
        return 0.0
    model = model or TasteModel()
    tempo = _tempo_closeness(item.tempo_bpm, user.tempo_center, model.tempo_width_bpm)
    return (model.style_weight * user.style_affinity(item.style)
            + model.ensemble_weight * user.ensemble_affinity(item.ensemble) + model.tempo_weight * tempo)


def listened_seconds(fit, rng: np.random.Generator, model: TasteModel | None = None) -> np.ndarray:
    """Seconds listened after a click, for a fit or an array of them (one exponential draw each).

    ``min(track_seconds, Exponential(listen_mean_s * max(fit, fit_floor) ** fit_power))``: a skip hazard that
    falls steeply with the fit, so P(listen >= 30 s) = exp(-30 / mean) before the cut."""
    model = model or TasteModel()
    mean = model.listen_mean_s * np.maximum(np.asarray(fit, dtype=float), model.fit_floor) ** model.fit_power
    return np.minimum(model.track_seconds, rng.exponential(mean))


def choose_listens(user: UserProfile, clicked: Sequence[CatalogTrack | None], rng: np.random.Generator,
                   model: TasteModel | None = None) -> list[float]:
    """Seconds listened to each clicked track, in order (one draw per track from ``rng``)."""
    if not clicked:
        return []
    fits = [taste_fit(user, track, model) for track in clicked]
    return [round(float(s), 3) for s in listened_seconds(np.array(fits), rng, model)]
