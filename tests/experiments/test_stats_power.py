"""Power, MDE and the days-to-decision estimate."""

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower

from experiments.stats.group_sequential import GroupSequentialDesign, crossing_probability
from experiments.stats.power import (
    PowerConfig,
    group_sequential_max_users,
    minimum_detectable_effect,
    power_analysis,
    power_at,
    sequential_minimum_detectable_effect,
    users_needed,
)


def test_mde_hand_worked():
    # (1.959964 + 0.841621) * sqrt(0.0004) = 2.801585 * 0.02
    assert minimum_detectable_effect(0.0004) == pytest.approx(2.8015852 * 0.02, rel=1e-6)
    assert power_at(minimum_detectable_effect(0.0004), 0.0004) == pytest.approx(0.8, abs=1e-4)


def test_power_agrees_with_statsmodels():
    # Two equal arms of n units with unit variance: Var(diff) = 2/n; statsmodels uses effect size d.
    n, d = 400, 0.2
    ours = power_at(d, 2 / n)
    theirs = NormalIndPower().power(effect_size=d, nobs1=n, alpha=0.05, ratio=1.0)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_sequential_mde_is_larger_and_users_needed_is_consistent():
    config = PowerConfig(target_effect=0.05)
    variance, n = 0.03**2, 4000
    assert sequential_minimum_detectable_effect(variance, n) > minimum_detectable_effect(variance)
    needed = users_needed(variance, n, config)
    assert needed > n
    at_needed = sequential_minimum_detectable_effect(variance * n / needed, needed, n_star=config.n_star)
    assert at_needed == pytest.approx(0.05, rel=1e-6)


def test_days_to_decision():
    config = PowerConfig(target_effect=0.05)
    result = power_analysis(0.03**2, 4000, new_users_per_day=1000, config=config)
    assert result.days_to_decision == math.ceil((result.users_needed - 4000) / 1000)
    assert result.days_to_decision > 0
    assert power_analysis(0.001**2, 4000, 1000, config).days_to_decision == 0
    assert power_analysis(0.03**2, 4000, 0, config).days_to_decision is None
    assert math.isnan(power_analysis(float("nan"), 0, 10, config).mde)


def test_the_group_sequential_plan_has_the_power_it_promises():
    variance, n_now, target = 0.04**2, 2000, 0.05
    max_users = group_sequential_max_users(variance, n_now, target, power=0.8)
    fixed = (1.959964 + 0.841621) ** 2 * variance * n_now / target**2
    assert 1.02 < max_users / fixed < 1.06
    design = GroupSequentialDesign(max_users)
    bounds = design.bounds(max_users * np.arange(1, 15) / 14, 0.025)
    drift = target / math.sqrt(variance * n_now / max_users)  # E[z] at the planned maximum
    assert crossing_probability(bounds, drift) == pytest.approx(0.8, abs=1e-3)
