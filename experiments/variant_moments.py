"""VariantMoments: the per-arm moments the worker keeps, so that a full analysis never scans every user for them.

One float array per arm in the order of ``stats.metric_moments.MomentLayout``: users, the sum of each raw per-user
sum (post and pre period, has-pre), the sum of each product of two of them, and the per-user CTR histogram, over
the arm's users with impressions > 0. The worker adds, per batch and arm, (the moments of the users' new sums) -
(the moments of their old sums): a user's old sums are the new ones minus the batch (the pre-period sums never
change), a user new to the experiment or still without impressions had none. ``rebuild`` computes the same arrays
from UserAggregate in one scan: the migration that created the table, test fixtures and benches that write
UserAggregate directly, and the reference the worker's arrays are tested against.
"""

from __future__ import annotations

import numpy as np
from django.db import connection

from experiments.models import UserAggregate, VariantMoments
from experiments.stats.aggregates import HISTOGRAM_BINS
from experiments.stats.metric_moments import STORED_PRODUCTS, STORED_VARIABLES, MomentLayout, Variable

TABLE = VariantMoments._meta.db_table
USERS = UserAggregate._meta.db_table
LAYOUT = MomentLayout(HISTOGRAM_BINS)


COLUMNS = tuple(v.source for v in STORED_VARIABLES if not v.indicator)


def _name(v: Variable, prefix: str) -> str:
    return f"{prefix}{v.name}"


def per_user(prefix: str, values: dict[str, str], counted: str) -> str:
    """The select list of one user's row for the aggregates below: every stored variable as float8, 0 when the
    user is not ``counted`` (so that products need no NULL handling), ``{prefix}users`` 1 or 0, and the CTR
    histogram bucket (NULL when not counted). ``values``: the SQL of each column's value."""
    out = [f"CASE WHEN {counted} THEN 1.0::float8 ELSE 0.0 END AS {prefix}users"]
    out += [f"CASE WHEN {counted} THEN ({values[c]})::float8 ELSE 0.0 END AS {prefix}{c}" for c in COLUMNS]
    out.append(f"CASE WHEN {counted} AND {values['pre_impressions']} > 0 THEN 1.0::float8 ELSE 0.0 END "
               f"AS {prefix}has_pre")
    # integer division as numpy's //, on bigints (the worker's old sums are numeric: a sum() of bigints)
    out.append(f"CASE WHEN {counted} THEN least(({values['clicks']})::bigint * {HISTOGRAM_BINS} / "
               f"greatest(({values['impressions']})::bigint, 1), {HISTOGRAM_BINS - 1}) END AS {prefix}bucket")
    return ", ".join(out)


def aggregates(new: str, old: str | None = None) -> list[str]:
    """The aggregate expressions of the layout, in layout order, over rows of ``per_user`` columns: the moments of
    the ``new`` values, less those of the ``old`` ones when given (a worker batch's change)."""
    def term(expression) -> str:
        return expression(new) if old is None else f"{expression(new)} - {expression(old)}"

    out = [f"sum({term(lambda p: f'{p}users')})"]
    out += [f"sum({term(lambda p, v=v: _name(v, p))})" for v in STORED_VARIABLES]
    out += [f"sum({term(lambda p, a=a, b=b: f'{_name(a, p)} * {_name(b, p)}')})" for a, b in STORED_PRODUCTS]
    for i in range(HISTOGRAM_BINS):
        count = f"count(*) FILTER (WHERE {new}bucket = {i})"
        out.append(f"({count})::float8" if old is None
                   else f"({count} - count(*) FILTER (WHERE {old}bucket = {i}))::float8")
    assert len(out) == LAYOUT.size
    return out


ADD_ARRAYS = (f"(SELECT array_agg(x + y ORDER BY i) FROM unnest({TABLE}.moments, EXCLUDED.moments) "
              "WITH ORDINALITY AS t(x, y, i))")


def worker_ctes(upserted: str, batch: str, sums: tuple[tuple[str, str], ...]) -> str:
    """Two CTEs for the worker's per-user statement: ``upserted`` returns each touched user's new row (variant_id,
    the sums, the pre sums and ``inserted``), ``batch`` this batch's sums per user (short names of ``sums``). They
    add the batch's change of every moment to each arm's array. Each value is cast to float8 once per user."""
    short = dict(sums)
    new = per_user("n_", {c: f"u.{c}" for c in COLUMNS}, "u.impressions > 0")
    old_values = {c: f"u.{c}" if c.startswith("pre_") else f"u.{c} - b.{short[c]}" for c in COLUMNS}
    old = per_user("o_", old_values, f"NOT u.inserted AND u.impressions - b.{short['impressions']} > 0")
    return f"""moment_steps AS (
        SELECT u.experiment_id, u.variant_id, {new}, {old}
        FROM {upserted} u JOIN {batch} b USING (experiment_id, user_key)),
    kept_moments AS (
        INSERT INTO {TABLE} (experiment_id, variant_id, moments)
        SELECT experiment_id, variant_id, ARRAY[{", ".join(aggregates("n_", "o_"))}] FROM moment_steps
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (experiment_id, variant_id) DO UPDATE SET moments = {ADD_ARRAYS})"""


def scan_sql(one_experiment: bool) -> str:
    """The arrays computed from UserAggregate: (experiment_id, variant_id, moments) per arm; with
    ``one_experiment`` one parameter, the experiment id."""
    where = "AND u.experiment_id = %s" if one_experiment else ""
    rows = per_user("", {c: f"u.{c}" for c in COLUMNS}, "true")
    return (f"SELECT experiment_id, variant_id, ARRAY[{', '.join(aggregates(''))}] FROM (SELECT u.experiment_id, "
            f"u.variant_id, {rows} FROM {USERS} u WHERE u.impressions > 0 {where} OFFSET 0) s GROUP BY 1, 2")


def rebuild(experiment_id: int | None = None, cursor=None) -> None:
    """Recompute the arrays of one experiment (None: every experiment) from UserAggregate, in one scan."""
    params = [] if experiment_id is None else [experiment_id]
    statements = (
        (f"DELETE FROM {TABLE} WHERE {'true' if experiment_id is None else 'experiment_id = %s'}", params),
        (f"INSERT INTO {TABLE} (experiment_id, variant_id, moments) {scan_sql(experiment_id is not None)}", params),
    )
    if cursor is None:
        with connection.cursor() as own:
            for sql, args in statements:
                own.execute(sql, args)
        return
    for sql, args in statements:
        cursor.execute(sql, args)


def read(experiment_id: int) -> dict[int, np.ndarray]:
    """Per arm id, its stored array (arms without users have none)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT variant_id, moments FROM {TABLE} WHERE experiment_id = %s", [experiment_id])
        return {int(arm): np.asarray(values, dtype=float) for arm, values in cursor.fetchall()}
