"""The moments path (what the database sums) gives the same metric statistics as the per-user arrays, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats.aggregates import EMPTY, HISTOGRAM_BINS, user_statistics, user_statistics_from_stored
from experiments.stats.cuped import CupedRatioTest
from experiments.stats.frequentist import DifferenceType, FrequentistConfig
from experiments.stats.metric_moments import (
    SOURCE_COLUMNS,
    MomentLayout,
    TailUsers,
    arm_moments_from_columns,
    metric_data_from_moments,
    moment_query,
    moments_with_caps,
    percentile_from_tail,
    stored_moments_from_columns,
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


@pytest.mark.parametrize("percentile", [99.0, 95.0, None])
def test_stored_raw_moments_corrected_over_the_tail_equal_the_capped_arrays(percentile):
    """What the worker stores (raw moments) plus the tail correction gives every capped sum and product, with a tail
    that holds more users than the caps touch (as the sample's lower thresholds return)."""
    rng = np.random.default_rng(11)
    arms = {1: _arm(rng, 3000, 0.0), 2: _arm(rng, 2500, 0.1)}
    query = moment_query(METRICS.values())
    layout = MomentLayout(HISTOGRAM_BINS)
    caps = {raw.name: percentile_cap([c.column(raw.column, pre=raw.pre) for c in arms.values()], percentile).cap
            for raw in query.capped}
    for cols in arms.values():
        expected = arm_moments_from_columns(query, cols, caps)
        everything = {f"{p}{c}": cols.column(c, pre=bool(p)) for p in ("", "pre_") for c in SOURCE_COLUMNS}
        above = np.zeros(cols.users, dtype=bool)
        for column, cap in caps.items():  # every user a bit below a cap or above it, and some others at random
            if cap is not None:
                above |= everything[column] >= 0.8 * cap
        above |= rng.random(cols.users) < 0.01
        tail = TailUsers({c: everything[c][above] for c in everything})
        got = moments_with_caps(query, stored_moments_from_columns(cols, layout), tail, caps, layout)
        assert got.n == expected.n
        assert got.above_cap == expected.above_cap
        for name, value in expected.sums.items():
            assert got.sums[name] == pytest.approx(value, rel=1e-12)
        for pair, value in expected.products.items():
            assert got.products[pair] == pytest.approx(value, rel=1e-12)


def test_stored_histogram_and_ctr_sums_equal_the_frequency_table():
    rng = np.random.default_rng(3)
    cols = _arm(rng, 2000, 0.0)
    stored = stored_moments_from_columns(cols, MomentLayout(HISTOGRAM_BINS))
    d, m = cols.impressions.astype(int), cols.clicks.astype(int)
    pairs, counts = np.unique(np.stack([d, m], axis=1), axis=0, return_counts=True)
    table = [(5, int(i), int(c), int(k)) for (i, c), k in zip(pairs, counts, strict=True)]
    assert user_statistics_from_stored({5: stored}, [5, 6]) == (
        {**user_statistics(table, [5])[0], 6: EMPTY}, {**user_statistics(table, [5])[1], 6: [0] * HISTOGRAM_BINS})
