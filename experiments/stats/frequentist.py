"""Fixed-horizon tests of a ratio metric (CTR with the user as unit) and the naive per-impression test.

``RatioZTest`` is the test the platform trusts: users are randomised, so users are the
independent units and the delta method gives the variance of each arm's CTR. The naive
``naive_impression_ztest`` treats every impression as an independent Bernoulli trial; a user
who sees many impressions and clicks a lot (or never) breaks that independence, and the
naive test's false-positive rate goes up. It is shown beside the real one for contrast only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.stats import norm
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from experiments.stats.statistics import Number, RatioStatistic, _safe_divide


class DifferenceType(StrEnum):
    ABSOLUTE = "absolute"  # R_t - R_c, in CTR points
    RELATIVE = "relative"  # R_t / R_c - 1, the "lift"


@dataclass(frozen=True)
class FrequentistConfig:
    alpha: float = 0.05
    difference_type: DifferenceType = DifferenceType.RELATIVE

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")


@dataclass(frozen=True)
class TestResult:
    """An effect estimate with its standard error, two-sided p-value and confidence interval."""

    __test__ = False  # not a pytest test class

    effect: Number
    standard_error: Number
    ci_lower: Number
    ci_upper: Number
    p_value: Number
    error_message: str | None = None

    @classmethod
    def failed(cls, problem: str) -> TestResult:
        """A result that carries only why no test could be computed."""
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan, error_message=problem)


def absolute_difference(control: RatioStatistic, treatment: RatioStatistic) -> tuple[Number, Number]:
    """Delta = R_t - R_c and  Var(Delta) = Var(R_t) + Var(R_c)  (independent arms)."""
    return treatment.ratio - control.ratio, treatment.variance + control.variance


def relative_difference(control: RatioStatistic, treatment: RatioStatistic) -> tuple[Number, Number]:
    """Lift L = R_t / R_c - 1 and its delta-method variance

    Var(L) = Var(R_t) / R_c^2  +  R_t^2 Var(R_c) / R_c^4.
    """
    r_c, r_t = control.ratio, treatment.ratio
    lift = _safe_divide(r_t, r_c) - 1
    variance = _safe_divide(treatment.variance, r_c**2) + _safe_divide(r_t**2 * control.variance, r_c**4)
    return lift, variance


def difference(control: RatioStatistic, treatment: RatioStatistic,
               difference_type: DifferenceType) -> tuple[Number, Number]:
    if DifferenceType(difference_type) is DifferenceType.ABSOLUTE:
        return absolute_difference(control, treatment)
    return relative_difference(control, treatment)


def normal_test(effect: Number, variance: Number, alpha: float) -> TestResult:
    """Wald z-test:  z = effect / se,  p = 2 (1 - Phi(|z|)),  CI = effect +- z_{1-alpha/2} se."""
    se = np.sqrt(variance)
    z = _safe_divide(effect, se)
    p_value = 2 * norm.sf(np.abs(z))
    half = norm.ppf(1 - alpha / 2) * se
    if np.ndim(p_value) == 0:
        p_value = float(p_value)
    return TestResult(effect=effect, standard_error=se, ci_lower=effect - half, ci_upper=effect + half,
                      p_value=p_value)


def _problem(control: RatioStatistic, treatment: RatioStatistic) -> str | None:
    """A reason the comparison cannot be made (scalar inputs only), else None."""
    if np.ndim(control.n) or np.ndim(treatment.n):
        return None
    if min(control.n, treatment.n) < 2:
        return "fewer than 2 users in an arm"
    if min(control.sum_d, treatment.sum_d) == 0:
        return "no impressions in an arm"
    if control.sum_m == 0:
        return "no clicks in the control arm"
    if not (control.variance > 0 or treatment.variance > 0):
        return "zero variance: every user has the same CTR"
    return None


@dataclass(frozen=True)
class RatioZTest:
    """Delta-method z-test of treatment against control for a ratio metric with the user as unit."""

    control: RatioStatistic
    treatment: RatioStatistic
    config: FrequentistConfig = FrequentistConfig()

    def compute_result(self) -> TestResult:
        problem = _problem(self.control, self.treatment)
        if problem:
            return TestResult.failed(problem)
        effect, variance = difference(self.control, self.treatment, self.config.difference_type)
        return normal_test(effect, variance, self.config.alpha)


def naive_impression_ztest(control_clicks: Number, control_impressions: Number, treatment_clicks: Number,
                           treatment_impressions: Number, alpha: float = 0.05) -> TestResult:
    """Per-impression two-proportion test (statsmodels), ignoring that impressions cluster in users.

    p-value: pooled z-test ``proportions_ztest``; CI of p_t - p_c: Wald ``confint_proportions_2indep``.
    Works on arrays (elementwise) as well as scalars.
    """
    args = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in
                                 (control_clicks, control_impressions, treatment_clicks, treatment_impressions)))
    c_clicks, c_imps, t_clicks, t_imps = (a.ravel() for a in args)
    p_values = np.empty(c_clicks.shape)
    lower = np.empty(c_clicks.shape)
    upper = np.empty(c_clicks.shape)
    for i in range(c_clicks.size):
        _, p_values[i] = proportions_ztest([t_clicks[i], c_clicks[i]], [t_imps[i], c_imps[i]])
        lower[i], upper[i] = confint_proportions_2indep(t_clicks[i], t_imps[i], c_clicks[i], c_imps[i],
                                                        method="wald", compare="diff", alpha=alpha)
    effect = t_clicks / t_imps - c_clicks / c_imps
    se = (upper - lower) / (2 * norm.ppf(1 - alpha / 2))
    shape = args[0].shape
    if shape == ():
        return TestResult(float(effect[0]), float(se[0]), float(lower[0]), float(upper[0]), float(p_values[0]))
    return TestResult(effect.reshape(shape), se.reshape(shape), lower.reshape(shape), upper.reshape(shape),
                      p_values.reshape(shape))
