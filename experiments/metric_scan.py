"""Every metric's per-arm moments, winsorised: the worker's stored raw moments (VariantMoments) corrected over the
users at the top, so that no per-user row travels to Python and at most one pass reads every user (statistics core:
stats/metric_moments.py).

1. the stored arrays of the experiment's arms (experiments/variant_moments.py): every sum and product any metric
   plan needs, of the raw per-user sums, and the number of users;
2. a 1 % page sample (``TABLESAMPLE SYSTEM``) gives, per capped column (post and pre period), a threshold a
   little below the winsorisation percentile;
3. ONE filtered pass returns the users above any threshold (17k of the bench's 1M), from whose values
   ``percentile_from_tail`` computes each cap exactly as ``np.percentile`` would on every user; the same rows
   correct the stored sums and products from raw to capped (``moments_with_caps``). A threshold the tail shows
   to be too high (the sample was unlucky), or an experiment too small for the sample, falls back to
   ``percentile_cont`` over every user for that column and a second filtered pass: exact either way, only slower.

Without winsorisation only step 1 runs. ``scanned_metric_moments`` (one scan summing every product per user,
``moments_sql``) is what the analysis did before: bench/analysis.py times it beside the stored path and compares
their sums (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from django.db import connection

from experiments import variant_moments
from experiments.models import UserAggregate
from experiments.stats.metric_moments import (
    ArmMoments,
    MomentQuery,
    TailUsers,
    Variable,
    metric_data_from_moments,
    moment_query,
    moments_with_caps,
    percentile_from_tail,
)
from experiments.stats.metrics import MetricData, MetricSpec, Winsorisation

TABLE = UserAggregate._meta.db_table
WHERE = "u.experiment_id = %s AND u.impressions > 0"
SAMPLE_PERCENT = 1.0
SAMPLE_MARGIN = 0.5  # the threshold is the sample's (percentile - 0.5)th percentile
MIN_SAMPLE = 2_000  # fewer sampled users: every value is sorted (a small experiment, cheap anyway)


def _expression(v: Variable, caps: dict[str, float | None]) -> str:
    if v.indicator:
        return "(u.pre_impressions > 0)::int::float8"
    column = f"u.{v.source}::float8"
    cap = caps.get(v.source) if v.capped else None
    return column if cap is None else f"least({column}, {float(cap)!r}::float8)"


def moments_sql(query: MomentQuery, caps: dict[str, float | None]) -> str:
    """The sums' scan, with one parameter (the experiment id). The inner query computes each variable once per user
    (OFFSET 0 keeps PostgreSQL from inlining it into every product)."""
    names = [f"v{i}" for i in range(len(query.variables))]
    index = {v.name: names[i] for i, v in enumerate(query.variables)}
    inner = ", ".join(f"{_expression(v, caps)} AS {index[v.name]}" for v in query.variables)
    selects = ["count(*)"] + [f"sum({n})" for n in names]
    selects += [f"sum({index[a.name]} * {index[b.name]})" for a, b in query.products]
    return (f"SELECT variant_id, {', '.join(selects)} FROM (SELECT u.variant_id, {inner} FROM {TABLE} u "
            f"WHERE {WHERE} OFFSET 0) s GROUP BY variant_id")


def _thresholds(experiment_id: int, columns: list[str], percentile: float) -> dict[str, float] | None:
    fraction = max(0.0, percentile - SAMPLE_MARGIN) / 100
    selects = ", ".join(f"percentile_disc({fraction!r}) WITHIN GROUP (ORDER BY u.{c})" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), {selects} FROM {TABLE} u TABLESAMPLE SYSTEM ({SAMPLE_PERCENT}) "
                       f"REPEATABLE (24) WHERE {WHERE}", [experiment_id])
        sampled, *values = cursor.fetchone()
    return None if sampled < MIN_SAMPLE else {c: float(v) for c, v in zip(columns, values, strict=True)}


def _sorted_caps(experiment_id: int, columns: list[str], percentile: float) -> dict[str, Winsorisation]:
    """Caps by sorting every user's value (percentile_cont: linear interpolation, as numpy), and the users above."""
    fraction = percentile / 100
    caps = ", ".join(f"percentile_cont({fraction!r}) WITHIN GROUP (ORDER BY u.{c}::float8) AS {c}" for c in columns)
    above = ", ".join(f"count(*) FILTER (WHERE u.{c} > caps.{c})" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH caps AS MATERIALIZED (SELECT {caps} FROM {TABLE} u WHERE {WHERE}) "
                       f"SELECT {', '.join(f'caps.{c}' for c in columns)}, {above} FROM {TABLE} u CROSS JOIN caps "
                       f"WHERE {WHERE} GROUP BY {', '.join(f'caps.{c}' for c in columns)}",
                       [experiment_id, experiment_id])
        row = cursor.fetchone()
    if row is None:
        return {c: Winsorisation(percentile, None, 0) for c in columns}
    k = len(columns)
    return {c: Winsorisation(percentile, float(row[i]), int(row[k + i])) for i, c in enumerate(columns)}


def _at_least(column: str, threshold: float) -> str:
    """``u.column >= threshold`` in the column's own type: a count compared with a float literal would be cast to
    numeric on every row (~4x the cost of the pass) and keep PostgreSQL from estimating, hence parallelising, it."""
    if column.endswith("listened_seconds"):
        return f"u.{column} >= {float(threshold)!r}::float8"
    return f"u.{column} >= {math.ceil(threshold)}"


def _tail_users(experiment_id: int, thresholds: dict[str, float]) -> dict[int, TailUsers]:
    """Per arm, every user whose value of some column is >= its threshold, as arrays of every stored column."""
    columns = ", ".join(f"u.{c}::float8" for c in variant_moments.COLUMNS)
    any_above = " OR ".join(_at_least(c, t) for c, t in thresholds.items())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT u.variant_id, {columns} FROM {TABLE} u WHERE {WHERE} AND ({any_above})",
                       [experiment_id])
        rows = cursor.fetchall()
    table = np.array([row[1:] for row in rows], dtype=float).reshape(-1, len(variant_moments.COLUMNS))
    arms = np.array([row[0] for row in rows], dtype=np.int64)
    return {int(arm): TailUsers({c: table[arms == arm, i] for i, c in enumerate(variant_moments.COLUMNS)})
            for arm in np.unique(arms)}


def caps_and_tail(experiment_id: int, columns: list[str], percentile: float | None,
                   users: int) -> tuple[dict[str, Winsorisation], dict[int, TailUsers]]:
    """The pooled cap of each column at ``percentile`` over the experiment's ``users``, and per arm the users a
    cap may touch."""
    if percentile is None or not columns:
        return {c: Winsorisation(percentile, None, 0) for c in columns}, {}
    thresholds = _thresholds(experiment_id, columns, percentile)
    caps: dict[str, Winsorisation] = {}
    tail: dict[int, TailUsers] = {}
    missing = list(columns)
    if thresholds is not None:
        tail = _tail_users(experiment_id, thresholds)
        missing = []
        for column in columns:
            values = np.concatenate([t.columns[column] for t in tail.values()] or [np.empty(0)])
            distinct, counts = np.unique(values[values >= thresholds[column]], return_counts=True)
            cap = percentile_from_tail(users, percentile, distinct, counts)
            if cap is None:
                missing.append(column)
            else:
                caps[column] = Winsorisation(percentile, cap, int(counts[distinct > cap].sum()))
    if missing:
        caps.update(_sorted_caps(experiment_id, missing, percentile))
        # the users above a sorted cap may lie below the sample's threshold: read the tail again down to the caps
        reach = {c: (caps[c].cap if c in missing else thresholds[c]) for c in columns}
        reach = {c: t for c, t in reach.items() if t is not None}
        tail = _tail_users(experiment_id, reach) if reach else {}
    return caps, tail


def metric_moments(experiment_id: int, specs: Sequence[MetricSpec], percentile: float | None,
                   stored: dict[int, np.ndarray] | None = None) -> dict[str, MetricData]:
    """Per metric key, its per-arm statistics, winsorised at ``percentile`` (None: not capped). ``stored``: the
    arms' VariantMoments arrays (read when not given)."""
    query = moment_query(specs)
    stored = variant_moments.read(experiment_id) if stored is None else stored
    users = int(round(sum(values[0] for values in stored.values())))
    if users == 0:
        return {}
    caps, tail = caps_and_tail(experiment_id, [v.source for v in query.capped], percentile, users)
    cap_values = {c: w.cap for c, w in caps.items()}
    empty = TailUsers({c: np.empty(0) for c in variant_moments.COLUMNS})
    arms = {arm: moments_with_caps(query, values, tail.get(arm, empty), cap_values, variant_moments.LAYOUT)
            for arm, values in stored.items() if values[0] > 0}
    return {spec.key: metric_data_from_moments(spec, arms, caps) for spec in specs} if arms else {}


def scanned_metric_moments(experiment_id: int, specs: Sequence[MetricSpec],
                           percentile: float | None) -> dict[str, MetricData]:
    """The same as ``metric_moments`` by one scan that sums every product per user (``moments_sql``): the
    reference, and the cost the stored moments save."""
    query = moment_query(specs)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} u WHERE {WHERE}", [experiment_id])
        users = int(cursor.fetchone()[0])
    if users == 0:
        return {}
    caps, _ = caps_and_tail(experiment_id, [v.source for v in query.capped], percentile, users)
    with connection.cursor() as cursor:
        cursor.execute(moments_sql(query, {c: w.cap for c, w in caps.items()}), [experiment_id])
        rows = cursor.fetchall()
    arms = {}
    k, p = len(query.variables), len(query.products)
    for arm_id, n, *values in rows:
        sums = dict(zip((v.name for v in query.variables), values[:k], strict=True))
        products = dict(zip(((a.name, b.name) for a, b in query.products), values[k:k + p], strict=True))
        arms[int(arm_id)] = ArmMoments(float(n), sums, products, {})
    return {spec.key: metric_data_from_moments(spec, arms, caps) for spec in specs} if arms else {}
