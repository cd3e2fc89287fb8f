"""The metric registry: per-user ratio metrics over the same per-user sums, and their winsorised statistics.

Every metric is sum(numerator) / sum(denominator) over an arm's users, with the user as the unit (the
delta method of statistics.py): CTR, stream rate (listens of >= 30 s per impression), listened seconds per
click, skip rate (plays under 30 s per play). Each names its two per-user columns of ``UserColumns`` and
whether higher or lower is better, so a test can say "better" and "worse" without knowing the metric.

Winsorisation (as GrowthBook's metric capping, "percentile capping"): a few users with huge numerators
(a bot that clicks everything, a player left running all night) dominate a ratio's variance. Each user's
numerator (post and, separately, pre period) is capped at the given percentile of the pooled users of all
arms, the same cap for every arm so that the comparison stays fair; the cap and how many users it touched
are reported. Default the 99.9th percentile; ``None`` turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

import numpy as np

from experiments.stats.cuped import PrePostRatioStatistic
from experiments.stats.statistics import MeanRatioStatistic, RatioStatistic

LONG_LISTEN_SECONDS = 30  # a listen this long is a stream; a play ended before it is a skip
DEFAULT_WINSOR_PERCENTILE = 99.9


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


@dataclass(frozen=True)
class MetricSpec:
    """One ratio metric: per user, numerator column / denominator column of ``UserColumns``."""

    key: str
    label: str
    numerator: str
    denominator: str
    direction: Direction
    statistic_type: type[RatioStatistic] = RatioStatistic  # MeanRatioStatistic when numerator may exceed denominator

    @property
    def better_sign(self) -> int:
        """+1 when a positive lift is an improvement, -1 when it is a deterioration."""
        return 1 if self.direction is Direction.HIGHER_IS_BETTER else -1


METRICS: dict[str, MetricSpec] = {m.key: m for m in (
    MetricSpec("ctr", "CTR", "clicks", "impressions", Direction.HIGHER_IS_BETTER),
    MetricSpec("stream_rate", f"streams (>= {LONG_LISTEN_SECONDS} s) per impression", "long_listens", "impressions",
               Direction.HIGHER_IS_BETTER),
    MetricSpec("seconds_per_click", "listened seconds per click", "listened_seconds", "clicks",
               Direction.HIGHER_IS_BETTER, MeanRatioStatistic),
    MetricSpec("skip_rate", f"skip rate (plays < {LONG_LISTEN_SECONDS} s)", "short_plays", "plays",
               Direction.LOWER_IS_BETTER),
)}


def metric(key: str) -> MetricSpec:
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


@dataclass(frozen=True)
class UserColumns:
    """One arm's users, one entry per user in every array (1-D, equal length; users with impressions > 0).

    Post period: the user's totals since their first exposure in the experiment. Pre period (``pre_*``): the
    same totals over the lookback window before that first exposure (14 days by default), from all served
    traffic, experiment or not; 0 for a user who had none. A column left None is not available: the metrics
    that need it are skipped, and CUPED is skipped for a metric without both of its pre columns.
    """

    impressions: np.ndarray
    clicks: np.ndarray
    plays: np.ndarray | None = None
    long_listens: np.ndarray | None = None  # plays of >= LONG_LISTEN_SECONDS
    listened_seconds: np.ndarray | None = None
    short_plays: np.ndarray | None = None  # plays ended (skipped) before LONG_LISTEN_SECONDS
    pre_impressions: np.ndarray | None = None  # > 0 marks a user with pre-period data
    pre_clicks: np.ndarray | None = None
    pre_plays: np.ndarray | None = None
    pre_long_listens: np.ndarray | None = None
    pre_listened_seconds: np.ndarray | None = None
    pre_short_plays: np.ndarray | None = None

    def __post_init__(self):
        length = None
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            array = np.asarray(value, dtype=float)
            if array.ndim != 1:
                raise ValueError(f"{f.name} must be a 1-D array (one value per user)")
            if length is not None and array.size != length:
                raise ValueError(f"{f.name} has {array.size} users, expected {length}")
            if array.size and (not np.all(np.isfinite(array)) or array.min() < 0):
                raise ValueError(f"{f.name} must be finite and >= 0")
            length = array.size
            object.__setattr__(self, f.name, array)

    @property
    def users(self) -> int:
        return int(self.impressions.size)

    def column(self, name: str, pre: bool = False) -> np.ndarray | None:
        return getattr(self, f"pre_{name}" if pre else name)

    def has_pre(self) -> np.ndarray | None:
        return None if self.pre_impressions is None else (self.pre_impressions > 0).astype(float)


@dataclass(frozen=True)
class Winsorisation:
    """The cap applied to one column, pooled over the arms, and the users it changed."""

    percentile: float | None
    cap: float | None  # None: not capped (turned off, or no users)
    users_capped: int


def percentile_cap(columns: list[np.ndarray], percentile: float | None) -> Winsorisation:
    """The pooled ``percentile`` of the arms' values (linear interpolation, numpy's default)."""
    if percentile is None:
        return Winsorisation(None, None, 0)
    if not 0 < percentile <= 100:
        raise ValueError("the winsorisation percentile must be in (0, 100]")
    pooled = np.concatenate(columns) if columns else np.zeros(0)
    if pooled.size == 0:
        return Winsorisation(percentile, None, 0)
    cap = upper_percentile(pooled, percentile)
    return Winsorisation(percentile, cap, int(np.count_nonzero(pooled > cap)))


def upper_percentile(values: np.ndarray, percentile: float) -> float:
    """``np.percentile(values, percentile)`` (linear interpolation), exactly, in a fraction of its time for a high
    percentile: the two order statistics it interpolates are found among the values above a threshold read
    off a strided sample, and the full partition runs only when that threshold turns out too high."""
    n = values.size
    position = percentile / 100 * (n - 1)
    low = int(np.floor(position))
    high = min(low + 1, n - 1)
    threshold = np.percentile(values[:: max(1, n // 20_000)], max(0.0, percentile - 1.0))
    above = values[values > threshold]
    below = n - above.size
    if n < 50_000 or below > low:
        return float(np.percentile(values, percentile))
    part = np.partition(above, sorted({low - below, high - below}))
    a, b = part[low - below], part[high - below]
    return float(a + (b - a) * (position - low))


def _capped(values: np.ndarray, winsor: Winsorisation) -> np.ndarray:
    return values if winsor.cap is None else np.minimum(values, winsor.cap)


@dataclass(frozen=True)
class MetricData:
    """One metric's statistics per arm id, after winsorisation, and whether CUPED has pre data to use."""

    spec: MetricSpec
    statistics: dict[int, PrePostRatioStatistic]
    winsorisation: Winsorisation  # of the post-period numerator
    pre_winsorisation: Winsorisation | None  # of the pre-period numerator; None without pre columns

    @property
    def has_pre_columns(self) -> bool:
        return self.pre_winsorisation is not None


def metric_data(spec: MetricSpec, arms: Mapping[int, UserColumns],
                percentile: float | None = DEFAULT_WINSOR_PERCENTILE) -> MetricData | None:
    """The metric's per-arm statistics, or None when an arm lacks one of its columns.

    The numerator is capped at the pooled percentile; denominators are counts of chances and are not.
    Pre columns are used only when every arm has both, and the pre-data indicator is pre_impressions > 0.
    """
    if not arms or any(cols.column(spec.numerator) is None or cols.column(spec.denominator) is None
                       for cols in arms.values()):
        return None
    winsor = percentile_cap([cols.column(spec.numerator) for cols in arms.values()], percentile)
    with_pre = all(cols.column(spec.numerator, pre=True) is not None and cols.column(spec.denominator, pre=True)
                   is not None and cols.pre_impressions is not None for cols in arms.values())
    pre_winsor = (percentile_cap([cols.column(spec.numerator, pre=True) for cols in arms.values()], percentile)
                  if with_pre else None)
    statistics = {}
    for arm_id, cols in arms.items():
        m = _capped(cols.column(spec.numerator), winsor)
        d = cols.column(spec.denominator)
        if with_pre:
            statistics[arm_id] = PrePostRatioStatistic.from_units(
                m, d, _capped(cols.column(spec.numerator, pre=True), pre_winsor),
                cols.column(spec.denominator, pre=True), cols.has_pre())
        else:
            statistics[arm_id] = PrePostRatioStatistic.from_units(m, d)
    return MetricData(spec, statistics, winsor, pre_winsor)
