"""Every test of every treatment arm against the control, at today's look and over the daily looks.

Pure functions over sufficient statistics. ``report.analyse`` runs them and ``verdict`` puts
their outcome into words; nothing here decides what the numbers mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from experiments.stats.bayesian import chance_to_win
from experiments.stats.frequentist import (
    DifferenceType,
    FrequentistConfig,
    RatioZTest,
    TestResult,
    naive_impression_ztest,
    normal_test,
    relative_difference,
)
from experiments.stats.multiple import holm_adjust
from experiments.stats.power import (
    PowerConfig,
    PowerResult,
    minimum_detectable_effect,
    power_analysis,
    sequential_minimum_detectable_effect,
)
from experiments.stats.sequential import (
    SequentialConfig,
    SequentialRatioTest,
    always_valid_p_value,
    confidence_sequence_half_width,
    running_intersection,
    running_minimum,
)
from experiments.stats.srm import SrmResult, check_srm
from experiments.stats.statistics import RatioStatistic


@dataclass(frozen=True)
class AnalysisConfig:
    alpha: float = 0.05
    n_star: float = 10_000  # see SequentialConfig
    power: float = 0.8
    target_effect: float = 0.05  # smallest relative lift worth acting on
    min_users: int = 100  # below this per arm, say "not enough data" whatever the p-value

    @property
    def frequentist(self) -> FrequentistConfig:
        return FrequentistConfig(alpha=self.alpha, difference_type=DifferenceType.RELATIVE)

    @property
    def absolute(self) -> FrequentistConfig:
        return FrequentistConfig(alpha=self.alpha, difference_type=DifferenceType.ABSOLUTE)

    @property
    def sequential(self) -> SequentialConfig:
        return SequentialConfig(alpha=self.alpha, difference_type=DifferenceType.RELATIVE, n_star=self.n_star)

    @property
    def power_config(self) -> PowerConfig:
        return PowerConfig(alpha=self.alpha, power=self.power, target_effect=self.target_effect, n_star=self.n_star)


DEFAULT_CONFIG = AnalysisConfig()


@dataclass(frozen=True)
class Arm:
    key: str
    name: str
    weight: float
    is_control: bool
    statistic: RatioStatistic


@dataclass(frozen=True)
class Comparison:
    """One treatment arm against control."""

    key: str
    relative: TestResult  # lift R_t / R_c - 1 (delta method), fixed horizon
    absolute: TestResult  # R_t - R_c (delta method), fixed horizon
    sequential: TestResult  # lift with the always-valid confidence sequence and p-value (this look only)
    naive: TestResult  # per-impression two-proportion test, for contrast only
    p_value_adjusted: float  # Holm over the treatment arms
    always_valid_p_adjusted: float  # Holm over the treatment arms
    chance_to_win: float
    power: PowerResult


@dataclass(frozen=True)
class SequentialState:
    """The always-valid p-value (running minimum) and confidence sequence (running intersection)
    after the earlier looks, e.g. the last point of ``cumulative_series``."""

    p_value: float
    ci_lower: float
    ci_upper: float


def fold_in(look: TestResult, earlier: SequentialState | None) -> TestResult:
    """Today's look combined with the earlier ones: p = min, CI = intersection.

    If the intersection is empty (the effect moved more than the sequence allows: drift, a
    novelty effect, or a broken assumption), today's interval is kept and the error says so.
    """
    if earlier is None or math.isnan(look.p_value):
        return look
    lower, upper = max(look.ci_lower, earlier.ci_lower), min(look.ci_upper, earlier.ci_upper)
    message = look.error_message
    if lower > upper:
        lower, upper = look.ci_lower, look.ci_upper
        message = "the confidence sequence became empty: the effect changed over time"
    return TestResult(look.effect, look.standard_error, lower, upper, min(look.p_value, earlier.p_value), message)


def compare_arms(arms: Sequence[Arm], config: AnalysisConfig = DEFAULT_CONFIG,
                 new_users_per_day: float = 0.0, sequential_so_far: dict[str, SequentialState] | None = None
                 ) -> list[Comparison]:
    """Every treatment against the control, Holm-adjusted across treatments.

    ``sequential_so_far``: per treatment arm, the always-valid state after the earlier looks
    (the daily time series); today's look is folded in.
    """
    control = next(arm for arm in arms if arm.is_control)
    treatments = [arm for arm in arms if not arm.is_control]
    rows = []
    for arm in treatments:
        relative = RatioZTest(control.statistic, arm.statistic, config.frequentist).compute_result()
        absolute = RatioZTest(control.statistic, arm.statistic, config.absolute).compute_result()
        sequential = SequentialRatioTest(control.statistic, arm.statistic, config.sequential).compute_result()
        sequential = fold_in(sequential, (sequential_so_far or {}).get(arm.key))
        c, t = control.statistic, arm.statistic
        naive = (naive_impression_ztest(c.sum_m, c.sum_d, t.sum_m, t.sum_d, config.alpha)
                 if min(c.sum_d, t.sum_d) > 0 and c.sum_m + t.sum_m > 0 else _nan_result("no impressions"))
        rows.append((arm, relative, absolute, sequential, naive))
    p_adj = holm_adjust([r[1].p_value for r in rows])
    av_adj = holm_adjust([r[3].p_value for r in rows])
    comparisons = []
    for (arm, relative, absolute, sequential, naive), p, av in zip(rows, p_adj, av_adj, strict=True):
        variance = relative.standard_error**2
        n_now = control.statistic.n + arm.statistic.n
        comparisons.append(Comparison(
            key=arm.key, relative=relative, absolute=absolute, sequential=sequential, naive=naive,
            p_value_adjusted=float(p), always_valid_p_adjusted=float(av),
            chance_to_win=chance_to_win(relative.effect, variance) if variance > 0 else math.nan,
            power=power_analysis(variance, n_now, new_users_per_day, config.power_config)))
    return comparisons


def _nan_result(message: str) -> TestResult:
    nan = math.nan
    return TestResult(nan, nan, nan, nan, nan, error_message=message)


def srm_of(arms: Sequence[Arm]) -> SrmResult:
    return check_srm([int(arm.statistic.n) for arm in arms], [arm.weight for arm in arms])


def cumulative_series(control: RatioStatistic, treatment: RatioStatistic, config: AnalysisConfig) -> dict:
    """Per-look arrays (one entry per day of cumulative per-user moments) for the time-series charts:
    the lift with its fixed-horizon CI, the confidence sequence (running intersection), the
    always-valid p-value (running minimum) and the minimum detectable lift (fixed and sequential).

    Looks with fewer than ``config.min_users`` users in an arm do not count towards the running
    minimum and intersection: the normal approximation behind both is poor on a handful of users.
    """
    lift, variance = relative_difference(control, treatment)
    fixed = normal_test(lift, variance, config.alpha)
    n = control.n + treatment.n
    counted = np.minimum(control.n, treatment.n) >= config.min_users
    half = confidence_sequence_half_width(variance, n, config.alpha, config.n_star)
    lower = np.where(counted, np.asarray(lift - half), np.nan)
    upper = np.where(counted, np.asarray(lift + half), np.nan)
    cs_lower, cs_upper = running_intersection(lower, upper)
    p_look = np.where(counted, np.asarray(always_valid_p_value(lift, variance, n, config.alpha, config.n_star)), 1.0)
    p_av = running_minimum(p_look)
    return {"lift": np.asarray(lift), "ci_lower": np.asarray(fixed.ci_lower), "ci_upper": np.asarray(fixed.ci_upper),
            "cs_lower": cs_lower, "cs_upper": cs_upper, "p_value": np.asarray(fixed.p_value),
            "always_valid_p": p_av,
            "mde": np.asarray(minimum_detectable_effect(variance, config.alpha, config.power)),
            "mde_sequential": np.asarray(sequential_minimum_detectable_effect(variance, n, config.alpha, config.power,
                                                                              config.n_star))}
