"""Always-valid inference, so the dashboard can be read every day without inflating false positives.

A fixed-horizon p-value is valid only at the one sample size planned in advance; looking
every day and stopping at the first p < 0.05 raises the false-positive rate far above 5%.
A confidence *sequence* covers the true effect at every sample size at once with
probability 1 - alpha, so any day's reading (and the decision to stop on it) is valid.

We use the asymptotic confidence sequence of Howard, Ramdas, McAuliffe & Sekhon (2021)
(a normal-mixture boundary; the same one GrowthBook uses), which is the mixture
sequential probability ratio test (mSPRT) of Johari et al. with a normal mixing
distribution. For an asymptotically normal estimate with variance V after n units:

    tau2 = V n rho^2                 (mixing variance, in units of the estimate)
    half-width = sqrt( 2 V (n rho^2 + 1) / (n rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )
    always-valid p = min(1, sqrt(n rho^2 + 1) * exp( -effect^2 n rho^2 / (2 V (n rho^2 + 1)) ))

and p is the smallest alpha at which the sequence excludes 0. ``rho`` is tuned so that
the sequence is narrowest at n = n_star units (Howard et al., eq. 3.7):

    rho^2 = ( -2 log(alpha) + log(1 - 2 log(alpha)) ) / n_star

Over a series of looks the p-value is the running minimum and the interval the running
intersection; both stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats.frequentist import DifferenceType, TestResult, _problem, difference
from experiments.stats.statistics import Number, RatioStatistic


@dataclass(frozen=True)
class SequentialConfig:
    alpha: float = 0.05
    difference_type: DifferenceType = DifferenceType.RELATIVE
    # Users (both arms together) at which the confidence sequence is tightest. Fixed before the
    # experiment starts: tuning it on the data would void the guarantee.
    n_star: float = 10_000

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.n_star <= 0:
            raise ValueError("n_star must be > 0")


def mixture_rho_squared(alpha: float, n_star: float) -> float:
    """rho^2 = ( -2 log(alpha) + log(1 - 2 log(alpha)) ) / n_star."""
    log_a = np.log(alpha)
    return float((-2 * log_a + np.log(1 - 2 * log_a)) / n_star)


def confidence_sequence_half_width(variance: Number, n: Number, alpha: float, n_star: float) -> Number:
    """sqrt( 2 V (n rho^2 + 1) / (n rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )."""
    n_rho2 = np.asarray(n, dtype=float) * mixture_rho_squared(alpha, n_star)
    half = np.sqrt(2 * variance * (n_rho2 + 1) / n_rho2 * np.log(np.sqrt(n_rho2 + 1) / alpha))
    return float(half) if np.ndim(half) == 0 else half


def always_valid_p_value(effect: Number, variance: Number, n: Number, alpha: float, n_star: float) -> Number:
    """min(1, sqrt(n rho^2 + 1) exp(-effect^2 n rho^2 / (2 V (n rho^2 + 1)))) at one look.

    (Depends on alpha only through rho, i.e. through the tuning of the mixture.)
    """
    n_rho2 = np.asarray(n, dtype=float) * mixture_rho_squared(alpha, n_star)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = -np.square(effect) * n_rho2 / (2 * np.asarray(variance) * (n_rho2 + 1))
    p = np.minimum(1.0, np.sqrt(n_rho2 + 1) * np.exp(exponent))
    return float(p) if np.ndim(p) == 0 else p


def running_minimum(p_values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The always-valid p-value after each look: the smallest one seen so far (nan looks ignored)."""
    filled = np.where(np.isnan(p_values), 1.0, p_values)
    return np.minimum.accumulate(filled, axis=axis)


def running_intersection(lower: np.ndarray, upper: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The confidence sequence after each look: the intersection of all intervals so far."""
    lower = np.where(np.isnan(lower), -np.inf, lower)
    upper = np.where(np.isnan(upper), np.inf, upper)
    return np.maximum.accumulate(lower, axis=axis), np.minimum.accumulate(upper, axis=axis)


@dataclass(frozen=True)
class SequentialRatioTest:
    """Always-valid test of treatment against control for a ratio metric, at one look.

    n for the boundary is the number of users in both arms together.
    """

    control: RatioStatistic
    treatment: RatioStatistic
    config: SequentialConfig = SequentialConfig()

    def compute_result(self) -> TestResult:
        problem = _problem(self.control, self.treatment)
        if problem:
            return TestResult.failed(problem)
        effect, variance = difference(self.control, self.treatment, self.config.difference_type)
        n = self.control.n + self.treatment.n
        half = confidence_sequence_half_width(variance, n, self.config.alpha, self.config.n_star)
        p = always_valid_p_value(effect, variance, n, self.config.alpha, self.config.n_star)
        return TestResult(effect=effect, standard_error=np.sqrt(variance), ci_lower=effect - half,
                          ci_upper=effect + half, p_value=p)
