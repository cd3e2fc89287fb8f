"""The moments path (what the database sums) gives the same metric statistics as the per-user arrays, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats.cuped import CupedRatioTest
from experiments.stats.frequentist import DifferenceType, FrequentistConfig
from experiments.stats.metric_moments import (
    arm_moments_from_columns,
    metric_data_from_moments,
    moment_query,
    percentile_from_tail,
)
from experiments.stats.metrics import METRICS, UserColumns, Winsorisation, metric_data, percentile_cap


def _arm(rng: np.random.Generator, n: int, lift: float) -> UserColumns:
    imps = 1 + rng.poisson(8, n)
    clicks = rng.binomial(imps, np.minimum(rng.beta(1, 9, n) * (1 + lift), 1))
    long = rng.binomial(clicks, 0.6)
    seconds = long * rng.uniform(30, 200, n) + (clicks - long) * rng.uniform(0, 29, n)
    pre_imps = (1 + rng.poisson(8, n)) * (rng.random(n) < 0.7)
    pre_clicks = rng.binomial(pre_imps, 0.1)
    pre_long = rng.binomial(pre_clicks, 0.6)
    return UserColumns(imps, clicks, clicks, long, seconds, clicks - long, pre_imps, pre_clicks, pre_clicks,
                       pre_long, pre_long * rng.uniform(30, 200, n), pre_clicks - pre_long)


@pytest.mark.parametrize("percentile", [99.0, None])
def test_moments_equal_arrays(percentile):
    rng = np.random.default_rng(7)
    arms = {1: _arm(rng, 3000, 0.0), 2: _arm(rng, 2500, 0.1)}
    specs = list(METRICS.values())
    query = moment_query(specs)
    # Caps pooled over the arms, as the scan's percentile_cont takes them.
    caps = {}
    for raw in query.capped:
        caps[raw.name] = percentile_cap([c.column(raw.column, pre=raw.pre) for c in arms.values()], percentile)
    moments = {a: arm_moments_from_columns(query, c, {k: w.cap for k, w in caps.items()}) for a, c in arms.items()}
    for k, w in caps.items():
        assert sum(m.above_cap[k] for m in moments.values()) == w.users_capped
    config = FrequentistConfig(difference_type=DifferenceType.RELATIVE)
    for spec in specs:
        expected = metric_data(spec, arms, percentile)
        got = metric_data_from_moments(spec, moments, caps)
        assert got.winsorisation == expected.winsorisation and got.pre_winsorisation == expected.pre_winsorisation
        for a in arms:
            np.testing.assert_allclose(got.statistics[a].sums, expected.statistics[a].sums, rtol=1e-12)
            np.testing.assert_allclose(got.statistics[a].products, expected.statistics[a].products, rtol=1e-12)
        r1 = CupedRatioTest(expected.statistics[1], expected.statistics[2], config,
                            spec.statistic_type).compute_result()
        r2 = CupedRatioTest(got.statistics[1], got.statistics[2], config, spec.statistic_type).compute_result()
        for f in ("effect", "standard_error", "p_value"):
            assert abs(getattr(r1.adjusted, f) - getattr(r2.adjusted, f)) < 1e-9
            assert abs(getattr(r1.raw, f) - getattr(r2.raw, f)) < 1e-9
        if percentile is not None and spec.key == "seconds_per_click":
            assert got.winsorisation.users_capped > 0  # the cap did something


def test_query_sums_only_needed_products():
    query = moment_query(METRICS.values())
    # 4 metrics x 12 products at most, minus those CTR and stream rate share (impressions' squares etc.)
    assert len(query.products) <= 44
    assert all(not (a.indicator and b.pre) and not (b.indicator and a.pre) for a, b in query.products)
    assert Winsorisation(None, None, 0) == percentile_cap([np.ones(3)], None)


def test_percentile_from_the_upper_tail_equals_numpy():
    rng = np.random.default_rng(3)
    for values in (rng.poisson(2, 100_000).astype(float), rng.gamma(0.5, 100, 100_000), np.zeros(5000)):
        for percentile in (99.9, 99.0, 50.0):
            expected = np.percentile(values, percentile)
            threshold = np.percentile(values, percentile - 0.5)
            tail, counts = np.unique(values[values >= threshold], return_counts=True)
            assert percentile_from_tail(values.size, percentile, tail, counts) == expected
        short, counts = np.unique(values[values > np.percentile(values, 99.95)], return_counts=True)
        assert values.max() == 0 or percentile_from_tail(values.size, 99.0, short, counts) is None
