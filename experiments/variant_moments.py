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


def _value(v: Variable, prefix: str) -> str:
    if v.indicator:
        return f"({prefix}pre_impressions > 0)::int::float8"
    return f"{prefix}{v.source}::float8"


def aggregates(prefix: str) -> list[str]:
    """The aggregate expressions of the layout over rows whose columns are named ``{prefix}{column}`` (NULL in every
    column: a user that adds nothing), in layout order."""
    out = [f"count({prefix}impressions)::float8"]
    out += [f"coalesce(sum({_value(v, prefix)}), 0)" for v in STORED_VARIABLES]
    out += [f"coalesce(sum({_value(a, prefix)} * {_value(b, prefix)}), 0)" for a, b in STORED_PRODUCTS]
    # integer division as numpy's //: the worker's old sums are numeric (a sum() of bigints), hence the casts
    bucket = (f"least({prefix}clicks::bigint * {HISTOGRAM_BINS} / greatest({prefix}impressions::bigint, 1), "
              f"{HISTOGRAM_BINS - 1})")
    # least() skips NULLs: a user who adds nothing must be left out explicitly
    out += [f"(count(*) FILTER (WHERE {prefix}impressions IS NOT NULL AND {bucket} = {i}))::float8"
            for i in range(HISTOGRAM_BINS)]
    assert len(out) == LAYOUT.size
    return out


COLUMNS = tuple(v.source for v in STORED_VARIABLES if not v.indicator)
ADD_ARRAYS = (f"(SELECT array_agg(x + y ORDER BY i) FROM unnest({TABLE}.moments, EXCLUDED.moments) "
              "WITH ORDINALITY AS t(x, y, i))")


def worker_ctes(upserted: str, batch: str, sums: tuple[tuple[str, str], ...]) -> str:
    """Two CTEs for the worker's per-user statement: ``upserted`` returns each touched user's new row (variant_id,
    the sums, the pre sums and ``inserted``), ``batch`` this batch's sums per user (short names of ``sums``). They
    add the batch's change of every moment to each arm's array."""
    short = dict(sums)
    new = ", ".join(f"CASE WHEN u.impressions > 0 THEN u.{c} END AS n_{c}" for c in COLUMNS)
    old_has = f"NOT u.inserted AND u.impressions - b.{short['impressions']} > 0"
    old = ", ".join(f"CASE WHEN {old_has} THEN u.{c}{'' if c.startswith('pre_') else f' - b.{short[c]}'} END AS o_{c}"
                    for c in COLUMNS)
    delta = ", ".join(f"{n} - {o}" for n, o in zip(aggregates("n_"), aggregates("o_"), strict=True))
    return f"""moment_steps AS (
        SELECT u.experiment_id, u.variant_id, {new}, {old}
        FROM {upserted} u JOIN {batch} b USING (experiment_id, user_key)),
    kept_moments AS (
        INSERT INTO {TABLE} (experiment_id, variant_id, moments)
        SELECT experiment_id, variant_id, ARRAY[{delta}] FROM moment_steps GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (experiment_id, variant_id) DO UPDATE SET moments = {ADD_ARRAYS})"""


def scan_sql(one_experiment: bool) -> str:
    """The arrays computed from UserAggregate: (experiment_id, variant_id, moments) per arm; with
    ``one_experiment`` one parameter, the experiment id."""
    where = "AND u.experiment_id = %s" if one_experiment else ""
    return (f"SELECT u.experiment_id, u.variant_id, ARRAY[{', '.join(aggregates('u.'))}] FROM {USERS} u "
            f"WHERE u.impressions > 0 {where} GROUP BY 1, 2")


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
