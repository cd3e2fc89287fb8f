"""Power, minimum detectable effect and a days-to-decision estimate for the traffic seen so far.

All figures are for the relative lift of the ratio metric. The variance of the lift shrinks
like 1/n in the number of users, so today's delta-method variance V_now at n_now users
predicts V(n) = V_now n_now / n at any later n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from experiments.stats.group_sequential import Spending, inflation_factor
from experiments.stats.sequential import confidence_sequence_half_width


@dataclass(frozen=True)
class PowerConfig:
    alpha: float = 0.05
    power: float = 0.8
    # The smallest relative lift worth acting on; the days-to-decision estimate aims at it.
    target_effect: float = 0.05
    n_star: float = 10_000
    max_days: int = 365


@dataclass(frozen=True)
class PowerResult:
    mde: float  # fixed-horizon relative MDE at today's users (80% power by default)
    mde_sequential: float  # the same for the always-valid test the verdict uses
    power_at_target: float  # fixed-horizon power to detect target_effect today
    target_effect: float
    users_needed: float | None  # users (both arms) at which the sequential MDE reaches target_effect
    days_to_decision: int | None  # at today's new-user rate; None when unknown or beyond max_days
    new_users_per_day: float = 0.0


def _scalar_or_array(x):
    return float(x) if np.ndim(x) == 0 else np.asarray(x)


def minimum_detectable_effect(variance, alpha: float = 0.05, power: float = 0.8):
    """MDE = (z_{1-alpha/2} + z_{power}) sqrt(V)  for a two-sided fixed-horizon z-test (scalar or array)."""
    return _scalar_or_array((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * np.sqrt(variance))


def power_at(effect: float, variance: float, alpha: float = 0.05) -> float:
    """Power = Phi(|effect|/se - z_{1-alpha/2}) + Phi(-|effect|/se - z_{1-alpha/2})."""
    se = math.sqrt(variance)
    z = norm.ppf(1 - alpha / 2)
    return float(norm.cdf(abs(effect) / se - z) + norm.cdf(-abs(effect) / se - z))


def sequential_minimum_detectable_effect(variance, n, alpha: float = 0.05, power: float = 0.8,
                                         n_star: float = 10_000):
    """Effect at which the confidence sequence excludes 0 with probability ~power at this look:

    MDE_seq = half-width(V, n) + z_{power} sqrt(V).   (scalar or array)
    """
    return _scalar_or_array(confidence_sequence_half_width(variance, n, alpha, n_star)
                            + norm.ppf(power) * np.sqrt(variance))


def users_needed(variance_now: float, n_now: float, config: PowerConfig) -> float | None:
    """Smallest n >= n_now with MDE_seq(V_now n_now / n, n) <= target (bisection on log n)."""

    def mde_at(n: float) -> float:
        return sequential_minimum_detectable_effect(variance_now * n_now / n, n, config.alpha, config.power,
                                                    config.n_star)

    if mde_at(n_now) <= config.target_effect:
        return float(n_now)
    lo, hi = math.log(n_now), math.log(n_now * 1e6)
    if mde_at(math.exp(hi)) > config.target_effect:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mde_at(math.exp(mid)) <= config.target_effect else (mid, hi)
    return math.exp(hi)


def power_analysis(variance_now: float, n_now: float, new_users_per_day: float,
                   config: PowerConfig = PowerConfig()) -> PowerResult:
    """MDEs and power for today's variance of the relative lift, and days until the target is detectable."""
    if not (n_now > 0 and np.isfinite(variance_now) and variance_now > 0):
        return PowerResult(math.nan, math.nan, math.nan, config.target_effect, None, None, new_users_per_day)
    needed = users_needed(variance_now, n_now, config)
    days = None
    if needed is not None and needed <= n_now:
        days = 0
    elif needed is not None and new_users_per_day > 0:
        days = math.ceil((needed - n_now) / new_users_per_day)
        days = days if days <= config.max_days else None
    return PowerResult(
        mde=minimum_detectable_effect(variance_now, config.alpha, config.power),
        mde_sequential=sequential_minimum_detectable_effect(variance_now, n_now, config.alpha, config.power,
                                                            config.n_star),
        power_at_target=power_at(config.target_effect, variance_now, config.alpha),
        target_effect=config.target_effect, users_needed=needed, days_to_decision=days,
        new_users_per_day=new_users_per_day)


def group_sequential_max_users(variance_now: float, n_now: float, target_effect: float, alpha: float = 0.05,
                               power: float = 0.8, looks: int = 14,
                               spending: Spending = Spending.OBRIEN_FLEMING) -> float:
    """The maximum users (both arms) to fix at the start of a group-sequential experiment read at ``looks``
    equally spaced looks: the fixed-horizon users for a two-sided test of ``target_effect``,

        n_fixed = (z_{1-alpha/2} + z_power)^2 V_now n_now / target^2     (V shrinks like 1/n),

    times the design's inflation factor (group_sequential.inflation_factor: ~1.04 for 14 O'Brien-Fleming looks).
    ``variance_now`` at ``n_now`` users: a pilot's, an A/A's or a similar experiment's variance of the lift.
    """
    if not (variance_now > 0 and n_now > 0 and target_effect > 0):
        raise ValueError("need a positive variance, users and target effect")
    fixed = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) ** 2 * variance_now * n_now / target_effect**2
    return float(fixed * inflation_factor(looks, alpha, power, spending))
