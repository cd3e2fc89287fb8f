"""The analysis's inputs: the rows of the aggregate tables the worker keeps, as plain tuples, and
the sufficient statistics that follow from them.

The Django side only runs the queries (experiments/analysis.py) and hands the rows over as they
come from the cursor; turning them into statistics is arithmetic, so it lives here, with no
database in sight, and can be tested on hand-made rows.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from experiments.stats.metric_moments import MomentLayout, Variable
from experiments.stats.metrics import MetricData, UserColumns
from experiments.stats.statistics import RatioStatistic

HISTOGRAM_BINS = 20
# Where each moment sits in an arm's stored array (VariantMoments): the worker, the migration and the analysis share it.
STORED_LAYOUT = MomentLayout(HISTOGRAM_BINS)
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
    # While an experiment is young (< 3 days): the same cumulative moments per hour (rows as ``daily``, the second
    # field an hour as a datetime), for the charts only; the tests and the verdict read the daily looks.
    hourly: Sequence[Sequence] | None = None
    hourly_until: datetime | None = None
    # Per arm id, every user's listening and pre-period columns (metrics.UserColumns). Given, the report adds
    # every metric raw and CUPED, the group-sequential test and the ship decision; None: today's CTR report.
    user_columns: Mapping[int, UserColumns] | None = None
    # The same metrics already summed per arm by the database (metric key -> metrics.MetricData, from
    # metric_moments.py): what the platform passes, so that no per-user array reaches Python.
    metric_moments: Mapping[str, MetricData] | None = None
    # Per arm id, the worker's stored moments (metric_moments.MomentLayout with HISTOGRAM_BINS): given, the CTR
    # totals and the histogram come from them and ``user_counts`` is not read.
    stored_moments: Mapping[int, np.ndarray] | None = None


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


def user_statistics_from_stored(stored: Mapping[int, np.ndarray], arm_ids: Sequence[int]
                                ) -> tuple[dict[int, RatioStatistic], dict[int, list[int]]]:
    """``user_statistics`` from the worker's stored moments: the same sums (exact: integer sums in float64 below
    2**53) and the same histogram, with no per-user row read."""
    layout = STORED_LAYOUT
    d, m = Variable("impressions"), Variable("clicks")
    stats, hist = {}, {}
    for arm_id in arm_ids:
        values = stored.get(arm_id)
        if values is None:
            stats[arm_id], hist[arm_id] = EMPTY, [0] * HISTOGRAM_BINS
            continue
        stats[arm_id] = RatioStatistic(
            n=float(values[0]), sum_m=float(values[layout.sum_index(m)]), sum_d=float(values[layout.sum_index(d)]),
            sum_m2=float(values[layout.product_index(m, m)]), sum_d2=float(values[layout.product_index(d, d)]),
            sum_md=float(values[layout.product_index(d, m)]))
        hist[arm_id] = [int(round(x)) for x in values[layout.histogram_slice]]
    return stats, hist


def histogram_edges() -> list[float]:
    return np.linspace(0, 1, HISTOGRAM_BINS + 1).round(4).tolist()


def daily_statistics(rows: Sequence[Sequence], arm_ids: Sequence[int], until: date | None = None,
                     step: timedelta = timedelta(days=1)) -> tuple[list[date], dict[int, RatioStatistic]]:
    """Per arm, cumulative moments on every day from the first row to ``until`` (default: the last row),
    forward-filled: a day without events for an arm has no row, and its cumulative values are the previous
    day's. A running experiment's series runs to today, so quiet days show as no new users. With
    ``step=timedelta(hours=1)`` the rows are hours (datetimes), the same way."""
    if not rows:
        return [], {}
    first, last = rows[0][1], max(rows[-1][1], until or rows[-1][1])
    days = [first + step * i for i in range(int((last - first) / step) + 1)]
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


# --- per-user sums of every ratio metric (listening metrics, CUPED) -------------------------------------------

# The per-user sums the worker keeps (UserAggregate), in this column order; long listens are plays of >= 30 s,
# short plays (skips) the others. Ratio metrics are pairs of them: CTR = clicks / impressions, stream rate =
# long_listens / impressions, listened seconds per click = listened_seconds / clicks, skip rate =
# short_plays / plays.
METRIC_SUMS = ("impressions", "clicks", "plays", "long_listens", "short_plays", "listened_seconds")


@dataclass(frozen=True)
class UserMetricRows:
    """One arm's users (those with impressions > 0), one row each: their sums over the experiment (``post``) and
    over the pre-period before their first exposure (``pre``: the experiment's ``pre_period_days`` days of all
    their traffic, in any experiment or none; all 0 for a user without traffic then). Both (users, 6) float64
    arrays, columns ``METRIC_SUMS``. Counts are exact in float64 (below 2**53)."""

    arm_id: int
    post: np.ndarray
    pre: np.ndarray

    def __post_init__(self) -> None:
        for name in ("post", "pre"):
            array = getattr(self, name)
            if array.ndim != 2 or array.shape[1] != len(METRIC_SUMS):
                raise ValueError(f"{name} must be (users, {len(METRIC_SUMS)}), got {array.shape}")
        if self.post.shape != self.pre.shape:
            raise ValueError(f"post {self.post.shape} and pre {self.pre.shape} differ")

    @property
    def users(self) -> int:
        return int(self.post.shape[0])

    @property
    def has_pre(self) -> np.ndarray:
        """Users with pre-period data: some impressions in the window (every other sum follows a page)."""
        return self.pre[:, 0] > 0

    def column(self, name: str, *, pre: bool = False) -> np.ndarray:
        """One sum per user, e.g. ``rows.column("clicks")`` or ``rows.column("clicks", pre=True)``."""
        return (self.pre if pre else self.post)[:, METRIC_SUMS.index(name)]

    def columns(self) -> dict[str, np.ndarray]:
        """Every column by name (``impressions`` ... ``listened_seconds``, ``pre_impressions`` ...), 1-D arrays:
        the keyword arguments of the metrics' per-user columns (``UserColumns(**rows.columns())``)."""
        return {**{name: self.post[:, i] for i, name in enumerate(METRIC_SUMS)},
                **{f"pre_{name}": self.pre[:, i] for i, name in enumerate(METRIC_SUMS)}}


def user_metric_rows_by_arm(arm_ids: np.ndarray, post: np.ndarray, pre: np.ndarray,
                            arms: Sequence[int]) -> dict[int, UserMetricRows]:
    """Split the users of one experiment (``arm_ids[i]`` is user i's arm) into one ``UserMetricRows`` per arm id
    of ``arms`` (an arm without users gets empty arrays)."""
    return {arm: UserMetricRows(arm, post[arm_ids == arm], pre[arm_ids == arm]) for arm in arms}


# PostgreSQL's binary COPY of (arm id, METRIC_SUMS, pre-period METRIC_SUMS): a header (signature, flags, extension
# length and extension), then per row a 16-bit field count and, per field, a 32-bit length and the value, all
# big-endian; every field here is 8 bytes (bigint, or double precision for the seconds) and never NULL.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_FIELD_KINDS = ["i8"] * 6 + ["f8"] + ["i8"] * 5 + ["f8"]
_ROW_DTYPE = np.dtype([("fields", ">i2")] + [item for i, kind in enumerate(_FIELD_KINDS)
                                             for item in ((f"length{i}", ">i4"), (f"value{i}", f">{kind}"))])


def user_metric_rows_from_copy(data: bytes, arm_ids: Sequence[int] | None = None) -> dict[int, UserMetricRows]:
    """``UserMetricRows`` per arm from the binary COPY of one experiment's per-user rows (see ``_COPY_SIGNATURE``):
    the fixed-width rows are read as one structured array, never a Python object per user."""
    if not data.startswith(_COPY_SIGNATURE):
        raise ValueError("not PostgreSQL binary COPY data")
    start = len(_COPY_SIGNATURE) + 8 + struct.unpack_from(">i", data, len(_COPY_SIGNATURE) + 4)[0]
    count, rest = divmod(len(data) - start - 2, _ROW_DTYPE.itemsize)  # 2: the trailer
    if rest:
        raise ValueError("binary COPY rows of another shape than (arm, 6 sums, 6 pre-period sums)")
    rows = np.frombuffer(data, dtype=_ROW_DTYPE, count=count, offset=start)
    if count and not (rows["fields"] == len(_FIELD_KINDS)).all():
        raise ValueError(f"binary COPY rows must have {len(_FIELD_KINDS)} fields")
    values = [rows[f"value{i}"] for i in range(len(_FIELD_KINDS))]
    arm_of_user = values[0].astype(np.int64)
    post = np.column_stack(values[1:7]).astype(np.float64)
    pre = np.column_stack(values[7:13]).astype(np.float64)
    arms = arm_ids if arm_ids is not None else sorted(set(arm_of_user.tolist()))
    return user_metric_rows_by_arm(arm_of_user, post, pre, arms)
