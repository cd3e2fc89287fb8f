"""Every metric's per-arm moments in ONE statement over UserAggregate: the sums CUPED and the delta method need,
summed by PostgreSQL, so that no per-user row travels to Python (statistics core: stats/metric_moments.py).

The statement first takes the winsorisation caps (``percentile_cont``: linear interpolation, numpy's default,
pooled over the arms) of every numerator column, post and pre period, then scans the users once, grouped by
arm: the count, the sum of each variable (capped numerators, denominators, has-pre) and of each product the
metrics need, and per capped column the users above its cap. Cost: measured in bench/analysis.py
(docs/statistics.md); it grows with the users, one pass for the caps' sorts and one for the sums.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from experiments.models import UserAggregate
from experiments.stats.metric_moments import ArmMoments, MomentQuery, Variable, metric_data_from_moments, moment_query
from experiments.stats.metrics import MetricData, MetricSpec, Winsorisation


def _expression(v: Variable, percentile: float | None) -> str:
    if v.indicator:
        return "(u.pre_impressions > 0)::int::float8"
    column = f"u.{v.source}::float8"
    return f"least({column}, caps.cap_{v.source})" if v.capped and percentile is not None else column


def moments_sql(query: MomentQuery, percentile: float | None) -> str:
    """The statement, with two parameters: the experiment id, twice (the caps' pass and the sums' pass)."""
    table = UserAggregate._meta.db_table
    where = "experiment_id = %s AND impressions > 0"
    scan = "u.experiment_id = %s AND u.impressions > 0"
    expression = {v.name: _expression(v, percentile) for v in query.variables}
    selects = ["count(*)"] + [f"sum({expression[v.name]})" for v in query.variables]
    selects += [f"sum({expression[a.name]} * {expression[b.name]})" for a, b in query.products]
    if percentile is None:
        selects += ["0" for _ in query.capped]
        return f"SELECT variant_id, {', '.join(selects)} FROM {table} u WHERE {scan} GROUP BY variant_id"
    fraction = float(percentile) / 100
    caps = ", ".join(f"percentile_cont({fraction!r}) WITHIN GROUP (ORDER BY {v.source}::float8) AS cap_{v.source}"
                     for v in query.capped)
    selects += [f"count(*) FILTER (WHERE u.{v.source} > caps.cap_{v.source})" for v in query.capped]
    selects += [f"caps.cap_{v.source}" for v in query.capped]
    return (f"WITH caps AS MATERIALIZED (SELECT {caps} FROM {table} WHERE {where}) "
            f"SELECT variant_id, {', '.join(selects)} FROM {table} u CROSS JOIN caps WHERE {scan} "
            f"GROUP BY variant_id, {', '.join(f'caps.cap_{v.source}' for v in query.capped)}")


def metric_moments(experiment_id: int, specs: Sequence[MetricSpec], percentile: float | None
                   ) -> dict[str, MetricData]:
    """Per metric key, its per-arm statistics (winsorised at ``percentile``, None: not capped): one statement."""
    query = moment_query(specs)
    sql = moments_sql(query, percentile)
    with connection.cursor() as cursor:
        cursor.execute(sql, [experiment_id] * sql.count("%s"))
        rows = cursor.fetchall()
    arms, above, cap_of = {}, {v.name: 0 for v in query.capped}, {}
    k, p, c = len(query.variables), len(query.products), len(query.capped)
    for arm_id, n, *values in rows:
        sums = dict(zip((v.name for v in query.variables), values[:k], strict=True))
        products = dict(zip(((a.name, b.name) for a, b in query.products), values[k:k + p], strict=True))
        counts = dict(zip((v.name for v in query.capped), values[k + p:k + p + c], strict=True))
        for name, count in counts.items():
            above[name] += int(count)
        cap_of = dict(zip((v.name for v in query.capped), values[k + p + c:], strict=False))
        arms[int(arm_id)] = ArmMoments(float(n), sums, products, counts)
    caps = {name: Winsorisation(percentile, None if cap_of.get(name) is None else float(cap_of[name]), above[name])
            for name in above}
    if not arms:
        return {}
    return {spec.key: metric_data_from_moments(spec, arms, caps) for spec in specs}
