"""Vectorised simulations of experiments with user-level clustering, for the statistics tests.

Users differ in click propensity (Beta(0.5, 4.5): mean CTR 0.10, a few heavy clickers, many
who never click) and in how many impressions they see (1 + Poisson with a Gamma-distributed
rate). Impressions of one user are therefore strongly correlated, which is exactly what
makes a per-impression test overconfident. Whole batches of experiments are drawn as
(experiments x users) arrays so thousands of experiments take about a second.
"""

from __future__ import annotations

import numpy as np

from experiments.stats.statistics import RatioStatistic

PROPENSITY_A, PROPENSITY_B = 0.5, 4.5

# Hand-worked example, (clicks, impressions) per user; the expected figures are worked out in
# test_stats_statistics.py and test_stats_frequentist.py.
CONTROL_USERS = [(1, 4), (0, 2), (2, 5), (1, 3)]
TREATMENT_USERS = [(2, 4), (1, 3), (0, 1), (3, 6), (1, 2)]


def ratio_of(users) -> RatioStatistic:
    m = np.array([u[0] for u in users], dtype=float)
    d = np.array([u[1] for u in users], dtype=float)
    return RatioStatistic.from_units(m, d)


def propensities(rng: np.random.Generator, shape, lift: float) -> np.ndarray:
    return np.minimum(rng.beta(PROPENSITY_A, PROPENSITY_B, size=shape) * (1 + lift), 1.0)


def simulate_final(rng: np.random.Generator, experiments: int, users: int, lift: float = 0.0,
                   mean_impressions: float = 10.0) -> RatioStatistic:
    """One look at the end: per-arm sums for ``experiments`` experiments of ``users`` users each."""
    shape = (experiments, users)
    d = 1 + rng.poisson(rng.gamma(1.0, mean_impressions - 1, size=shape))
    m = rng.binomial(d, propensities(rng, shape, lift))
    return RatioStatistic.from_units(m, d)


def simulate_daily(rng: np.random.Generator, experiments: int, users: int, days: int = 14, lift: float = 0.0,
                   daily_rate: float = 1.0, equal_cohorts: bool = False) -> RatioStatistic:
    """Cumulative per-user sums at the end of each day, shape (experiments, days).

    Users arrive on a uniformly random day with one impression, then see Poisson(rate_i)
    more every day; exactly the VariantDailyMoments rows the dashboard reads. ``equal_cohorts``:
    as many users arrive every day (to within one), so every experiment has the same users per look.
    """
    shape = (experiments, users)
    arrival = (np.broadcast_to(np.arange(users) % days, shape) if equal_cohorts
               else rng.integers(0, days, size=shape))
    rate = rng.gamma(1.0, daily_rate, size=shape)
    p = propensities(rng, shape, lift)
    clicks = np.zeros(shape)
    impressions = np.zeros(shape)
    looks = []
    for day in range(days):
        active = arrival <= day
        new = np.where(active, rng.poisson(rate) + (arrival == day), 0)
        impressions += new
        clicks += rng.binomial(new, p)
        looks.append((active.sum(axis=1), clicks.sum(axis=1), impressions.sum(axis=1), (clicks**2).sum(axis=1),
                      (impressions**2).sum(axis=1), (clicks * impressions).sum(axis=1)))
    return RatioStatistic(*(np.stack([look[k] for look in looks], axis=1).astype(float) for k in range(6)))


def simulate_listening(rng: np.random.Generator, shape, ctr_lift: float = 0.0, skip_lift: float = 0.0,
                       pre_share: float = 1.0, activity_sigma: float = 1.0, mean_impressions: float = 10.0,
                       listening: bool = True) -> dict[str, np.ndarray]:
    """Per-user post- and pre-period columns (users on the last axis of ``shape``), the player simulator's shape.

    A user keeps, across both periods, their activity (log-normal with the simulator's ``activity_sigma`` 1.0:
    a few heavy users, many light ones), click propensity (Beta(0.8, 7.2): mean 0.10, the simulator's
    strength 8) and taste fit (the chance a play lasts >= 30 s, Beta(4, 2)): activity persists, as in
    experiments/simulation/taste.py. Impressions: 1 + Poisson(activity) in each period; a user is new (no
    pre-period data: zeros) with probability 1 - pre_share.
    ``ctr_lift`` multiplies the propensity; ``skip_lift`` raises the chance of a skip (1 - fit) relatively.
    Long listens last 30 s + Gamma (mean 120 s), skips Gamma (mean 15 s). ``listening=False``: impressions
    and clicks only (faster).
    """
    activity = rng.lognormal(np.log(mean_impressions) - activity_sigma**2 / 2, activity_sigma, size=shape)
    propensity = rng.beta(0.8, 7.2, size=shape)
    fit = rng.beta(4.0, 2.0, size=shape) if listening else None

    def period(impressions, p, f):
        clicks = rng.binomial(impressions, p)
        if not listening:
            return {"impressions": impressions.astype(float), "clicks": clicks.astype(float)}
        long = rng.binomial(clicks, f)
        short = clicks - long
        seconds = 30 * long + rng.gamma(np.maximum(long, 1e-12) * 2.0, 60.0) * (long > 0) \
            + rng.gamma(np.maximum(short, 1e-12) * 3.0, 5.0) * (short > 0)
        return {"impressions": impressions.astype(float), "clicks": clicks.astype(float),
                "plays": clicks.astype(float), "long_listens": long.astype(float),
                "listened_seconds": seconds, "short_plays": short.astype(float)}

    post = period(1 + rng.poisson(activity), np.minimum(propensity * (1 + ctr_lift), 1.0),
                  np.clip(1 - (1 - fit) * (1 + skip_lift), 0.0, 1.0) if listening else None)
    has_pre = rng.random(shape) < pre_share
    pre = period((1 + rng.poisson(activity)) * has_pre, propensity, fit)
    return post | {f"pre_{k}": v for k, v in pre.items()}
