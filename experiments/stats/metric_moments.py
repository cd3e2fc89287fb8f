"""Every metric's per-arm moments, as one scan of the per-user sums returns them: the input CUPED needs, without
a per-user array in Python.

CUPED and the delta method read only sums: per arm, n, the sums of the five per-user variables of a metric
(post numerator m, post denominator d, pre numerator m', pre denominator d', has-pre h) and the sums of their
products (``cuped.PrePostRatioStatistic``). So the database can sum them in one pass over the users and return a
few hundred numbers, whatever the number of users (experiments/metric_scan.py renders the SQL from
``moment_query``). Numerators are winsorised at caps pooled over the arms, as ``metrics.metric_data`` caps
per-user arrays: the caps come with the scan.

Products that follow from others are not summed: h h = h, h m' = m' and h d' = d' (a user without pre data has
m' = d' = 0), so each metric costs at most 5 sums and 12 products, and metrics sharing a variable share its
sums. ``arm_moments_from_columns`` computes the same sums from per-user arrays: the reference the SQL is tested
against, and with which ``metric_data_from_moments`` equals ``metrics.metric_data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from experiments.stats.cuped import PrePostRatioStatistic
from experiments.stats.metrics import METRICS, MetricData, MetricSpec, UserColumns, Winsorisation


@dataclass(frozen=True)
class Variable:
    """One per-user variable of a metric: a ``UserColumns`` column, of the post or pre period, capped or not;
    or the has-pre indicator (pre_impressions > 0)."""

    column: str
    pre: bool = False
    capped: bool = False
    indicator: bool = False

    @property
    def name(self) -> str:
        if self.indicator:
            return "has_pre"
        return f"{'pre_' if self.pre else ''}{self.column}{'_capped' if self.capped else ''}"

    @property
    def source(self) -> str:
        """The per-user column it is read from."""
        return f"{'pre_' if self.pre else ''}{self.column}"


HAS_PRE = Variable("impressions", pre=True, indicator=True)


def metric_variables(spec: MetricSpec) -> tuple[Variable, Variable, Variable, Variable, Variable]:
    """(m, d, m', d', h) of ``spec`` in ``cuped.VARIABLES`` order; numerators capped."""
    return (Variable(spec.numerator, capped=True), Variable(spec.denominator),
            Variable(spec.numerator, pre=True, capped=True), Variable(spec.denominator, pre=True), HAS_PRE)


def _product_source(a: Variable, b: Variable) -> tuple[Variable, Variable] | Variable:
    """A product, or the single variable whose sum it equals (h h = h; h times a pre variable = that variable)."""
    if a.indicator and (b.indicator or b.pre):
        return b
    if b.indicator and a.pre:
        return a
    return (a, b) if a.name <= b.name else (b, a)


@dataclass(frozen=True)
class MomentQuery:
    """What a scan must return per arm: the count, the sum of each variable, the sum of each product, and per
    capped column the number of users above its cap."""

    variables: tuple[Variable, ...]
    products: tuple[tuple[Variable, Variable], ...]
    capped: tuple[Variable, ...]  # uncapped source variables (column, period) whose caps the scan computes


def moment_query(specs: Iterable[MetricSpec]) -> MomentQuery:
    variables, products, capped = {}, {}, {}
    for spec in specs:
        vs = metric_variables(spec)
        for v in vs:
            variables[v.name] = v
            if v.capped:
                raw = Variable(v.column, pre=v.pre)
                capped[raw.name] = raw
        for i, a in enumerate(vs):
            for b in vs[i:]:
                source = _product_source(a, b)
                if isinstance(source, tuple):
                    products[(source[0].name, source[1].name)] = source
    return MomentQuery(tuple(variables.values()), tuple(products.values()), tuple(capped.values()))


@dataclass(frozen=True)
class ArmMoments:
    """One arm's scan result: users, sums by variable name, sums of products by (name, name) sorted, users above
    each cap by source column name."""

    n: float
    sums: Mapping[str, float]
    products: Mapping[tuple[str, str], float]
    above_cap: Mapping[str, int]


def statistic_from_moments(spec: MetricSpec, arm: ArmMoments) -> PrePostRatioStatistic:
    """The metric's ``PrePostRatioStatistic`` from an arm's moments."""
    vs = metric_variables(spec)
    sums = np.array([arm.sums[v.name] for v in vs], dtype=float)
    products = np.empty((5, 5))
    for i, a in enumerate(vs):
        for j, b in enumerate(vs):
            source = _product_source(a, b)
            products[i, j] = (arm.sums[source.name] if isinstance(source, Variable)
                              else arm.products[(source[0].name, source[1].name)])
    return PrePostRatioStatistic(arm.n, sums, products)


def metric_data_from_moments(spec: MetricSpec, arms: Mapping[int, ArmMoments],
                             caps: Mapping[str, Winsorisation]) -> MetricData:
    """``metrics.metric_data`` from per-arm moments: ``caps`` by source column name (``clicks``, ``pre_clicks``),
    each with the pooled cap the scan used and the users above it (summed over the arms)."""
    post, pre = caps[spec.numerator], caps[f"pre_{spec.numerator}"]
    return MetricData(spec, {arm_id: statistic_from_moments(spec, arm) for arm_id, arm in arms.items()}, post, pre)


def _values(cols: UserColumns, v: Variable, caps: Mapping[str, float | None]) -> np.ndarray:
    if v.indicator:
        return cols.has_pre()
    values = cols.column(v.column, pre=v.pre)
    cap = caps.get(Variable(v.column, pre=v.pre).name) if v.capped else None
    return values if cap is None else np.minimum(values, cap)


def arm_moments_from_columns(query: MomentQuery, cols: UserColumns, caps: Mapping[str, float | None]) -> ArmMoments:
    """The moments a scan returns, computed from one arm's per-user arrays (caps by source column name; a
    missing or None cap: not capped). The reference implementation of metric_scan.py's SQL."""
    values = {v.name: _values(cols, v, caps) for v in query.variables}
    above = {}
    for raw in query.capped:
        cap = caps.get(raw.name)
        above[raw.name] = 0 if cap is None else int(np.count_nonzero(cols.column(raw.column, pre=raw.pre) > cap))
    return ArmMoments(float(cols.users), {k: float(v.sum()) for k, v in values.items()},
                      {(a.name, b.name): float(values[a.name] @ values[b.name]) for a, b in query.products}, above)


def percentile_from_tail(n: int, percentile: float, values: np.ndarray, counts: np.ndarray) -> float | None:
    """``np.percentile`` (linear interpolation) of n values from their upper tail alone: the distinct ``values`` of the
    tail with their ``counts``. None when the tail does not reach down to the order statistics the percentile
    interpolates (the caller then sorts every value). A cap needs only the top ~0.1 % of users: the scan sends
    those, never a million rows."""
    if n <= 0:
        return None
    order = np.argsort(values)
    values, counts = np.asarray(values, dtype=float)[order], np.asarray(counts, dtype=np.int64)[order]
    below = n - int(counts.sum())
    position = percentile / 100 * (n - 1)
    low = int(np.floor(position))
    high = min(low + 1, n - 1)
    if low < below:
        return None
    ends = below + np.cumsum(counts)  # rank (0-based) after the last copy of each value
    a, b = values[np.searchsorted(ends, low, side="right")], values[np.searchsorted(ends, high, side="right")]
    t = position - low
    return float(a + (b - a) * t) if t < 0.5 else float(b - (b - a) * (1 - t))  # numpy's lerp, bit for bit


# --- moments kept by the worker ----------------------------------------------------------------------------------
# The worker keeps, per arm, every moment a metric plan over the registry can ask for, of the raw (uncapped)
# per-user sums of the users with impressions > 0, plus the per-user CTR histogram (experiments/events/ingest.py,
# VariantMoments): one float array per arm in the order of ``MomentLayout``. The analysis then reads a few hundred
# numbers instead of scanning every user, and winsorisation becomes a correction over the users at the top
# (``moments_with_caps``).

SOURCE_COLUMNS = ("impressions", "clicks", "plays", "long_listens", "short_plays", "listened_seconds")
STORED_VARIABLES: tuple[Variable, ...] = (*(Variable(c) for c in SOURCE_COLUMNS),
                                          *(Variable(c, pre=True) for c in SOURCE_COLUMNS), HAS_PRE)


def _raw(v: Variable) -> Variable:
    return v if v.indicator else Variable(v.column, pre=v.pre)


def _needed_raw_products(specs: Iterable[MetricSpec]) -> set[tuple[str, str]]:
    """The raw (uncapped) products the metrics' queries need: a capped variable's product is corrected from its
    raw one."""
    needed = set()
    for a, b in moment_query(specs).products:
        pair = _product_source(_raw(a), _raw(b))
        if isinstance(pair, tuple):
            needed.add((pair[0].name, pair[1].name))
    return needed


_NEEDED = _needed_raw_products(METRICS.values())
# Only the products some registered metric needs (40 of the 84 pairs): each one costs the worker an aggregate per
# touched user and batch. A metric added to the registry that needs another product changes this layout: its
# migration must rebuild the arrays (variant_moments.rebuild), as 0014 built them.
STORED_PRODUCTS: tuple[tuple[Variable, Variable], ...] = tuple(
    source for i, a in enumerate(STORED_VARIABLES) for b in STORED_VARIABLES[i:]
    if isinstance(source := _product_source(a, b), tuple)
    and (source[0].name, source[1].name) in _NEEDED)


@dataclass(frozen=True)
class MomentLayout:
    """Where each stored moment sits in an arm's array: [users, sums..., products..., histogram...]."""

    histogram_bins: int

    @property
    def size(self) -> int:
        return 1 + len(STORED_VARIABLES) + len(STORED_PRODUCTS) + self.histogram_bins

    def sum_index(self, v: Variable) -> int:
        return 1 + [s.name for s in STORED_VARIABLES].index(_raw(v).name)

    def product_index(self, a: Variable, b: Variable) -> int:
        pair = _product_source(_raw(a), _raw(b))
        if isinstance(pair, Variable):
            return self.sum_index(pair)
        names = [(x.name, y.name) for x, y in STORED_PRODUCTS]
        return 1 + len(STORED_VARIABLES) + names.index((pair[0].name, pair[1].name))

    @property
    def histogram_slice(self) -> slice:
        return slice(self.size - self.histogram_bins, self.size)


def stored_moments_from_columns(cols: UserColumns, layout: MomentLayout) -> np.ndarray:
    """An arm's stored array computed from its per-user arrays: the reference the worker's SQL is tested against."""
    histogram_bins = layout.histogram_bins
    out = np.zeros(layout.size)
    values = {v.name: _values(cols, v, {}) for v in STORED_VARIABLES}
    out[0] = cols.users
    for v in STORED_VARIABLES:
        out[layout.sum_index(v)] = values[v.name].sum()
    for a, b in STORED_PRODUCTS:
        out[layout.product_index(a, b)] = values[a.name] @ values[b.name]
    m, d = cols.clicks.astype(np.int64), cols.impressions.astype(np.int64)
    buckets = np.minimum(m * histogram_bins // np.maximum(d, 1), histogram_bins - 1)
    out[layout.histogram_slice] = np.bincount(buckets, minlength=histogram_bins)
    return out


@dataclass(frozen=True)
class TailUsers:
    """The users of one arm that a cap may touch (every user above some column's threshold), as arrays by source
    column name (``clicks``, ``pre_clicks``...): what the filtered pass returns."""

    columns: Mapping[str, np.ndarray]

    def values(self, v: Variable, caps: Mapping[str, float | None]) -> np.ndarray:
        if v.indicator:
            return (self.columns["pre_impressions"] > 0).astype(float)
        raw = self.columns[v.source]
        cap = caps.get(v.source) if v.capped else None
        return raw if cap is None else np.minimum(raw, cap)


def moments_with_caps(query: MomentQuery, stored: np.ndarray, tail: TailUsers, caps: Mapping[str, float | None],
                      layout: MomentLayout) -> ArmMoments:
    """An arm's ``ArmMoments`` for ``query`` from its stored raw moments, winsorised: each capped sum and product is
    the raw one plus, over the tail users, (capped - raw). Users below every cap add nothing to that correction, so
    the tail may hold more users than the caps touch; it must hold every user above a cap."""
    raw_values = {v.name: tail.values(_raw(v), {}) for v in query.variables}
    values = {v.name: tail.values(v, caps) for v in query.variables}
    sums = {v.name: float(stored[layout.sum_index(v)] + (values[v.name] - raw_values[v.name]).sum())
            for v in query.variables}
    products = {(a.name, b.name): float(stored[layout.product_index(a, b)]
                                        + values[a.name] @ values[b.name] - raw_values[a.name] @ raw_values[b.name])
                for a, b in query.products}
    above = {}
    for raw in query.capped:
        cap = caps.get(raw.name)
        above[raw.name] = 0 if cap is None else int(np.count_nonzero(tail.columns[raw.name] > cap))
    return ArmMoments(float(stored[0]), sums, products, above)
