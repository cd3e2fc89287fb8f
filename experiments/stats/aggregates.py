"""The analysis's inputs: the rows of the aggregate tables the worker keeps, as plain tuples, and
the sufficient statistics that follow from them.

The Django side only runs the queries (experiments/analysis.py) and hands the rows over as they
come from the cursor; turning them into statistics is arithmetic, so it lives here, with no
database in sight, and can be tested on hand-made rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from experiments.stats.metrics import UserColumns
from experiments.stats.statistics import RatioStatistic

HISTOGRAM_BINS = 20
RATE_WINDOW_DAYS = 7  # new users per day = mean daily growth over the last week

EMPTY = RatioStatistic(0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class ArmSpec:
    """One variant. ``id`` only labels the rows below that belong to it (the variant's primary key)."""

    id: int
    key: str
    name: str
    weight: float
    is_control: bool


@dataclass(frozen=True)
class ExperimentInfo:
    """What the report repeats about the experiment itself."""

    experiment_id: int
    name: str
    hypothesis: str
    status: str
    started_at: str | None  # ISO 8601
    age_days: float | None
    computed_at: str  # ISO 8601


@dataclass(frozen=True)
class AggregateRows:
    """One experiment's aggregate rows, as the cursor returns them."""

    # (arm id, impressions, clicks, number of users with exactly these totals), users with impressions > 0:
    # the whole distribution of per-user values in a few thousand rows.
    user_counts: Sequence[Sequence[int]]
    # (arm id, day, users, sum_clicks, sum_impressions, sum_clicks_sq, sum_impressions_sq, sum_impressions_clicks),
    # ordered by day: the moments of the cumulative per-user values at the end of each day.
    daily: Sequence[Sequence]
    # (arm id, position, impressions, clicks), ordered by position.
    positions: Sequence[Sequence[int]] = ()
    until: date | None = None  # run the daily series to this day (today, for a running experiment)
    # Per arm id, every user's listening and pre-period columns (metrics.UserColumns). Given, the report adds
    # every metric raw and CUPED, the group-sequential test and the ship decision; None: today's CTR report.
    user_columns: Mapping[int, UserColumns] | None = None


def user_statistics(user_counts: Sequence[Sequence[int]], arm_ids: Sequence[int]
                    ) -> tuple[dict[int, RatioStatistic], dict[int, list[int]]]:
    """Per arm, the delta-method sums and the histogram of per-user CTR, exact functions of the frequency table.

    Histogram bucket i holds CTR in [i/B, (i+1)/B); CTR = 1 goes into the last bucket.
    """
    rows = np.array(user_counts, dtype=np.int64).reshape(-1, 4)
    stats, hist = {}, {}
    for arm_id in arm_ids:
        _, d, m, w = rows[rows[:, 0] == arm_id].T
        stats[arm_id] = RatioStatistic(
            n=float(w.sum()), sum_m=float(w @ m), sum_d=float(w @ d), sum_m2=float(w @ (m * m)),
            sum_d2=float(w @ (d * d)), sum_md=float(w @ (m * d)))
        buckets = np.minimum(m * HISTOGRAM_BINS // np.maximum(d, 1), HISTOGRAM_BINS - 1)
        hist[arm_id] = np.bincount(buckets, weights=w, minlength=HISTOGRAM_BINS).astype(int).tolist()
    return stats, hist


def histogram_edges() -> list[float]:
    return np.linspace(0, 1, HISTOGRAM_BINS + 1).round(4).tolist()


def daily_statistics(rows: Sequence[Sequence], arm_ids: Sequence[int], until: date | None = None
                     ) -> tuple[list[date], dict[int, RatioStatistic]]:
    """Per arm, cumulative moments on every day from the first row to ``until`` (default: the last row),
    forward-filled: a day without events for an arm has no row, and its cumulative values are the previous
    day's. A running experiment's series runs to today, so quiet days show as no new users."""
    if not rows:
        return [], {}
    first, last = rows[0][1], max(rows[-1][1], until or rows[-1][1])
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    values = {arm_id: np.full((len(days), 6), np.nan) for arm_id in arm_ids}
    for arm_id, day, *moments in rows:
        if arm_id in values:
            values[arm_id][index[day]] = moments
    out = {}
    for arm_id, array in values.items():
        for i in range(len(days)):
            if np.isnan(array[i, 0]):
                array[i] = array[i - 1] if i > 0 else 0.0
        out[arm_id] = RatioStatistic(*(array[:, k] for k in range(6)))
    return days, out


def last_day(daily: dict[int, RatioStatistic]) -> dict[int, RatioStatistic]:
    """Each arm's cumulative statistic at the end of the series: the same sums as the per-user totals, since the
    worker updates both in one transaction."""
    return {arm_id: RatioStatistic(*(float(np.asarray(getattr(s, f))[-1]) for f in
                                     ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md")))
            for arm_id, s in daily.items()}


def new_users_per_day(daily: dict[int, RatioStatistic]) -> float:
    """All arms' growth in users per day, averaged over the last ``RATE_WINDOW_DAYS`` days of the series."""
    if not daily:
        return 0.0
    total = sum(np.asarray(s.n) for s in daily.values())
    window = min(RATE_WINDOW_DAYS, len(total) - 1)
    if window <= 0:
        return float(total[-1])
    return float((total[-1] - total[-1 - window]) / window)


def position_series(rows: Sequence[Sequence[int]], arms: Sequence[ArmSpec]) -> dict[str, dict[str, list]]:
    """CTR by position, per arm key: {"position", "impressions", "clicks", "ctr"}."""
    key_of = {arm.id: arm.key for arm in arms}
    out: dict[str, dict[str, list]] = {arm.key: {"position": [], "impressions": [], "clicks": [], "ctr": []}
                                       for arm in arms}
    for arm_id, position, impressions, clicks in rows:
        if arm_id not in key_of:
            continue
        entry = out[key_of[arm_id]]
        entry["position"].append(int(position))
        entry["impressions"].append(int(impressions))
        entry["clicks"].append(int(clicks))
        entry["ctr"].append(clicks / impressions if impressions else None)
    return out
