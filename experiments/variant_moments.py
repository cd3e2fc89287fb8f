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

import contextlib

import numpy as np
from django.db import connection

from experiments.models import UserAggregate, VariantMoments
from experiments.stats.aggregates import HISTOGRAM_BINS, STORED_LAYOUT
from experiments.stats.metric_moments import STORED_PRODUCTS, STORED_VARIABLES, Variable

TABLE = VariantMoments._meta.db_table
USERS = UserAggregate._meta.db_table
LAYOUT = STORED_LAYOUT
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


def _moment_terms() -> list[tuple[str, object]]:
    """The layout's moments but the histogram, in order: (kind, a function of a column prefix giving the per-user
    term). Kind ``post``: changes whenever a user's post sums do; ``arrival``: a function of the pre sums and of being
    counted only, so it changes only in the batch in which a user is first counted."""
    terms: list[tuple[str, object]] = [("arrival", lambda p: f"{p}users")]
    terms += [("arrival" if v.pre or v.indicator else "post", lambda p, v=v: _name(v, p)) for v in STORED_VARIABLES]
    terms += [("arrival" if (a.pre or a.indicator) and (b.pre or b.indicator) else "post",
               lambda p, a=a, b=b: f"{_name(a, p)} * {_name(b, p)}") for a, b in STORED_PRODUCTS]
    return terms


def aggregates(prefix: str) -> list[str]:
    """The aggregate expressions of the whole layout, in order, over rows of ``per_user`` columns."""
    out = [f"sum({term(prefix)})" for _, term in _moment_terms()]
    out += [f"(count(*) FILTER (WHERE {prefix}bucket = {i}))::float8" for i in range(HISTOGRAM_BINS)]
    assert len(out) == LAYOUT.size
    return out


ADD_ARRAYS = (f"(SELECT array_agg(x + y ORDER BY i) FROM unnest({TABLE}.moments, EXCLUDED.moments) "
              "WITH ORDINALITY AS t(x, y, i))")


def worker_ctes(upserted: str, batch: str, sums: tuple[tuple[str, str], ...]) -> str:
    """CTEs for the worker's per-user statement: ``upserted`` returns each touched user's new row (variant_id, the
    sums, the pre sums and ``inserted``), ``batch`` this batch's sums per user (short names of ``sums``). They add
    the batch's change of every moment to each arm's array: (new user values) - (old user values). Each value is
    cast to float8 once per user; the moments that depend on post sums are summed over every touched user, those of
    the pre sums only over the users counted for the first time, and the histogram only over users whose bucket
    moved (a grouped count): per returning user ~half of the layout's aggregates."""
    short = dict(sums)
    new = per_user("n_", {c: f"u.{c}" for c in COLUMNS}, "u.impressions > 0")
    old_values = {c: f"u.{c}" if c.startswith("pre_") else f"u.{c} - b.{short[c]}" for c in COLUMNS}
    old = per_user("o_", old_values, f"NOT u.inserted AND u.impressions - b.{short['impressions']} > 0")
    terms = _moment_terms()
    post = ", ".join(f"sum({term('n_')} - {term('o_')}) AS e{k}" for k, (kind, term) in enumerate(terms)
                     if kind == "post")
    arrival = ", ".join(f"sum({term('n_')} - {term('o_')}) AS e{k}" for k, (kind, term) in enumerate(terms)
                        if kind == "arrival")
    layout = ", ".join(f"c.e{k}" if kind == "post" else f"coalesce(a.e{k}, 0)" for k, (kind, _) in enumerate(terms))
    return f"""moment_steps AS (
        SELECT u.experiment_id, u.variant_id, {new}, {old}
        FROM {upserted} u JOIN {batch} b USING (experiment_id, user_key)),
    moment_changes AS (
        SELECT experiment_id, variant_id, {post} FROM moment_steps GROUP BY 1, 2),
    moment_arrivals AS (
        SELECT experiment_id, variant_id, {arrival} FROM moment_steps WHERE n_users <> o_users GROUP BY 1, 2),
    bucket_moves AS (
        SELECT experiment_id, variant_id, bucket, sum(w) AS w FROM (
            SELECT experiment_id, variant_id, n_bucket AS bucket, 1 AS w FROM moment_steps
            WHERE n_bucket IS DISTINCT FROM o_bucket AND n_bucket IS NOT NULL
            UNION ALL
            SELECT experiment_id, variant_id, o_bucket, -1 FROM moment_steps
            WHERE n_bucket IS DISTINCT FROM o_bucket AND o_bucket IS NOT NULL) m
        GROUP BY 1, 2, 3),
    kept_moments AS (
        INSERT INTO {TABLE} (experiment_id, variant_id, moments)
        SELECT c.experiment_id, c.variant_id, ARRAY[{layout}] || ARRAY(
            SELECT coalesce(sum(h.w), 0)::float8 FROM generate_series(0, {HISTOGRAM_BINS - 1}) g
            LEFT JOIN bucket_moves h ON h.experiment_id = c.experiment_id AND h.variant_id = c.variant_id
                                     AND h.bucket = g
            GROUP BY g ORDER BY g)
        FROM moment_changes c LEFT JOIN moment_arrivals a USING (experiment_id, variant_id)
        ORDER BY 1, 2
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
    with connection.cursor() if cursor is None else contextlib.nullcontext(cursor) as c:
        for sql, args in statements:
            c.execute(sql, args)


def read(experiment_id: int) -> dict[int, np.ndarray]:
    """Per arm id, its stored array (arms without users have none)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT variant_id, moments FROM {TABLE} WHERE experiment_id = %s", [experiment_id])
        return {int(arm): np.asarray(values, dtype=float) for arm, values in cursor.fetchall()}
