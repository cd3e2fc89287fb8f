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
