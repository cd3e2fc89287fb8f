"""Bayesian reading of the same estimate: the probability that the treatment beats control."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from experiments.stats.statistics import Number


def chance_to_win(effect: Number, variance: Number) -> Number:
    """P(true effect > 0 | data) = Phi(effect / sqrt(V)).

    The posterior of the effect under a flat prior and the normal (delta-method)
    likelihood is N(effect, V); this is its mass above zero.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p = norm.cdf(np.asarray(effect) / np.sqrt(variance))
    return float(p) if np.ndim(p) == 0 else p
