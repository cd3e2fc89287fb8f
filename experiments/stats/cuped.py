"""CUPED for ratio metrics: the delta-method ratio difference adjusted by each user's pre-exposure ratio.

The estimator is Deng, Xu, Kohavi and Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data", appendix B, in the form GrowthBook's gbstats implements it
(``RegressionAdjustedRatioStatistic`` and ``compute_theta_regression_adjusted_ratio`` in
packages/stats/gbstats/models/statistics.py, ``frequentist_variance_relative_cuped_ratio`` in
gbstats/models/tests.py). Per arm, with means mu of the per-user post numerator m, post denominator d,
pre numerator m', pre denominator d' and the pre-data indicator h:

    adjusted  A = mu_m / mu_d  -  theta_1 mu_m' / mu_d'  -  theta_2 mu_h
    Var(A)    = grad' Lambda grad / n,   grad = (1/mu_d, -mu_m/mu_d^2, -theta_1/mu_d', theta_1 mu_m'/mu_d'^2, -theta_2)

with Lambda the per-user covariance matrix of (m, d, m', d', h). theta is pooled over the arms as gbstats
does: with the linearised post ratio y = (m - R d)/mu_d and pre ratio x = (m' - R' d')/mu_d' of each arm,
theta = (sum_arms Cov_arm(x, x))^-1 sum_arms Cov_arm(x, y), i.e. cov(y, x)/var(x) with one covariate.

Users without pre-period data (new users) have m' = d' = 0, so x = 0 for them. We add the indicator h
(has pre data) as a second covariate rather than post-stratifying on it: regression on a stratum indicator
is post-stratification with the pooled stratum weights up to O(1/n) (Miratrix, Sekhon and Yu 2013), it
needs only three more sums (of h, h m, h d: h m' = m' and h d' = d'), and it reuses the same gradient,
whereas post-stratifying a *ratio* needs per-stratum ratios re-weighted by denominator shares. When every
user or no user has pre data, h is constant and drops out; when no user has any, the result IS the
unadjusted delta-method test (``frequentist.RatioZTest``), bit for bit.

Relative lift (gbstats): (A_t - A_c) / R_c with R_c the *unadjusted* control ratio, so the lift stays a
lift of the metric people know; its variance carries the gradient of that denominator too.

Moments use this package's 1/n normalisation (see statistics.py), so with theta = 0 every figure is the
delta-method one. Every field may carry leading batch dimensions (thousands of simulated experiments).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats.frequentist import (
    DifferenceType,
    FrequentistConfig,
    RatioZTest,
    TestResult,
    normal_test,
)
from experiments.stats.statistics import Number, RatioStatistic, _safe_divide

# The five per-user variables, in this order in ``sums`` and ``products``.
VARIABLES = ("m", "d", "m_pre", "d_pre", "has_pre")
_M, _D, _MX, _DX, _H = range(5)
_DEGENERATE = 1e-15  # a covariate with less per-user variance than this is constant: it drops out


@dataclass(frozen=True)
class PrePostRatioStatistic:
    """Sufficient statistics of a ratio metric with its pre-exposure value: n users, the sums of the five
    per-user variables (post m, post d, pre m, pre d, has pre) and the 5 x 5 sums of their products.

    ``sums`` has shape (..., 5) and ``products`` (..., 5, 5); ``n`` the leading shape. Disjoint groups add.
    """

    n: Number
    sums: np.ndarray
    products: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "n", np.asarray(self.n, dtype=float) if np.ndim(self.n) else float(self.n))
        object.__setattr__(self, "sums", np.asarray(self.sums, dtype=float))
        object.__setattr__(self, "products", np.asarray(self.products, dtype=float))
        if self.sums.shape[-1:] != (5,) or self.products.shape[-2:] != (5, 5):
            raise ValueError("sums must end in 5 and products in 5 x 5: (m, d, m_pre, d_pre, has_pre)")
        if np.any(np.asarray(self.n) < 0) or np.any(self.sums < 0):
            raise ValueError("n and the sums must be >= 0")

    def __add__(self, other: PrePostRatioStatistic) -> PrePostRatioStatistic:
        return PrePostRatioStatistic(self.n + other.n, self.sums + other.sums, self.products + other.products)

    @classmethod
    def from_units(cls, m, d, m_pre=None, d_pre=None, has_pre=None) -> PrePostRatioStatistic:
        """The sums of per-user arrays (users on the last axis). Missing pre arrays mean no pre data; a
        missing ``has_pre`` is ``d_pre > 0``."""
        m = np.asarray(m, dtype=float)
        d = np.asarray(d, dtype=float)
        m_pre = np.zeros_like(m) if m_pre is None else np.asarray(m_pre, dtype=float)
        d_pre = np.zeros_like(m) if d_pre is None else np.asarray(d_pre, dtype=float)
        h = (d_pre > 0).astype(float) if has_pre is None else np.asarray(has_pre, dtype=float)
        # One (..., 5, users) copy and one matrix product: memory is read once (15 dot products read it 6 times).
        units = np.stack(np.broadcast_arrays(m, d, m_pre, d_pre, h), axis=-2)
        return cls(n=np.full(m.shape[:-1], m.shape[-1], dtype=float) if m.ndim > 1 else float(m.shape[-1]),
                   sums=units.sum(axis=-1), products=units @ np.swapaxes(units, -1, -2))

    def post(self, statistic_type: type[RatioStatistic] = RatioStatistic) -> RatioStatistic:
        """The post-period ratio alone: today's delta-method input."""
        s, p = self.sums, self.products
        return statistic_type(self.n, s[..., _M], s[..., _D], p[..., _M, _M], p[..., _D, _D], p[..., _M, _D])

    @property
    def users_with_pre(self) -> Number:
        return self.sums[..., _H]

    @property
    def means(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.sums / np.asarray(self.n)[..., None]

    @property
    def covariance(self) -> np.ndarray:
        """Lambda: the per-user covariance matrix of the five variables (1/n normalisation)."""
        mu = self.means
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.products / np.asarray(self.n)[..., None, None] - mu[..., :, None] * mu[..., None, :]


def _gradients(stat: PrePostRatioStatistic) -> tuple[np.ndarray, np.ndarray]:
    """b: gradient of the post ratio mu_m/mu_d; C (..., 5, 2): gradients of the covariates (pre ratio, has-pre)
    over the means. A pre ratio with no pre denominator (nobody has pre data) has gradient 0."""
    mu = stat.means
    shape = mu.shape[:-1]
    b = np.zeros(shape + (5,))
    with np.errstate(divide="ignore", invalid="ignore"):
        b[..., _M] = 1 / mu[..., _D]
        b[..., _D] = -mu[..., _M] / mu[..., _D] ** 2
        has_pre = mu[..., _DX] > 0
        c = np.zeros(shape + (5, 2))
        c[..., _MX, 0] = np.where(has_pre, 1 / np.where(has_pre, mu[..., _DX], 1), 0.0)
        c[..., _DX, 0] = np.where(has_pre, -mu[..., _MX] / np.where(has_pre, mu[..., _DX], 1) ** 2, 0.0)
    c[..., _H, 1] = 1.0
    return b, c


def _pre_ratio(stat: PrePostRatioStatistic) -> np.ndarray:
    mu = stat.means
    return np.where(mu[..., _DX] > 0, _safe_divide(mu[..., _MX], np.where(mu[..., _DX] > 0, mu[..., _DX], 1)), 0.0)


def pooled_theta(control: PrePostRatioStatistic, treatment: PrePostRatioStatistic) -> np.ndarray:
    """theta (..., 2) = (sum_arms C' Lambda C)^-1 sum_arms C' Lambda b: the covariates' regression coefficients
    pooled over the arms (gbstats ``compute_theta_regression_adjusted_ratio``, extended to two covariates).
    A covariate with no variance in the pooled arms (nobody has pre data; everybody has) gets 0."""
    s_xx = np.zeros(np.shape(control.n) + (2, 2))
    s_xy = np.zeros(np.shape(control.n) + (2,))
    for stat in (control, treatment):
        b, c = _gradients(stat)
        lam = stat.covariance
        s_xx = s_xx + np.einsum("...ia,...ij,...jb->...ab", c, lam, c)
        s_xy = s_xy + np.einsum("...ia,...ij,...j->...a", c, lam, b)
    a11, a22, a12 = s_xx[..., 0, 0], s_xx[..., 1, 1], s_xx[..., 0, 1]
    on1, on2 = a11 > _DEGENERATE, a22 > _DEGENERATE
    det = a11 * a22 - a12**2
    both = on1 & on2 & (det > _DEGENERATE * np.maximum(a11 * a22, _DEGENERATE))
    with np.errstate(divide="ignore", invalid="ignore"):
        theta1 = np.where(both, (a22 * s_xy[..., 0] - a12 * s_xy[..., 1]) / det,
                          np.where(on1, s_xy[..., 0] / a11, 0.0))
        theta2 = np.where(both, (a11 * s_xy[..., 1] - a12 * s_xy[..., 0]) / det,
                          np.where(on2 & ~both, s_xy[..., 1] / a22, 0.0))
    return np.stack([np.nan_to_num(theta1), np.nan_to_num(theta2)], axis=-1)


def adjusted_mean(stat: PrePostRatioStatistic, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One arm's A = mu_m/mu_d - theta_1 R' - theta_2 mu_h, and grad A over the five means."""
    b, c = _gradients(stat)
    mu = stat.means
    with np.errstate(divide="ignore", invalid="ignore"):
        value = mu[..., _M] / mu[..., _D] - theta[..., 0] * _pre_ratio(stat) - theta[..., 1] * mu[..., _H]
    return value, b - np.einsum("...ia,...a->...i", c, theta)


def _quadratic(grad: np.ndarray, stat: PrePostRatioStatistic) -> np.ndarray:
    """grad' Lambda grad / n."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.einsum("...i,...ij,...j->...", grad, stat.covariance, grad) / stat.n


def adjusted_difference(control: PrePostRatioStatistic, treatment: PrePostRatioStatistic, theta: np.ndarray,
                        difference_type: DifferenceType) -> tuple[np.ndarray, np.ndarray]:
    """The CUPED effect and its delta-method variance.

    absolute:  A_t - A_c,        Var = g_t' L_t g_t / n_t + g_c' L_c g_c / n_c
    relative:  (A_t - A_c)/R_c,  R_c the unadjusted control ratio; the control gradient (gbstats) is
               ( -(R_c + D)/(mu_d R_c^2),  mu_m (R_c + D)/(mu_d^2 R_c^2),  -g_c[pre..]/R_c ),  D = A_t - A_c,
               the treatment gradient g_t / R_c.
    """
    a_c, g_c = adjusted_mean(control, theta)
    a_t, g_t = adjusted_mean(treatment, theta)
    delta = a_t - a_c
    if DifferenceType(difference_type) is DifferenceType.ABSOLUTE:
        return delta, _quadratic(g_t, treatment) + _quadratic(g_c, control)
    mu = control.means
    with np.errstate(divide="ignore", invalid="ignore"):
        r_c = mu[..., _M] / mu[..., _D]
        grad_c = -g_c / r_c[..., None]
        grad_c[..., _M] = -(r_c + delta) / (mu[..., _D] * r_c**2)
        grad_c[..., _D] = mu[..., _M] * (r_c + delta) / (mu[..., _D] ** 2 * r_c**2)
        return delta / r_c, _quadratic(g_t / r_c[..., None], treatment) + _quadratic(grad_c, control)


@dataclass(frozen=True)
class CupedResult:
    """Raw and CUPED-adjusted estimates side by side."""

    raw: TestResult
    adjusted: TestResult
    theta: np.ndarray  # (..., 2): on the pre-period ratio, on the has-pre indicator
    variance_reduction: Number  # 1 - Var(adjusted) / Var(raw)
    users_with_pre: Number  # both arms


@dataclass(frozen=True)
class CupedRatioTest:
    """Delta-method z-test of treatment against control, unadjusted and CUPED-adjusted."""

    control: PrePostRatioStatistic
    treatment: PrePostRatioStatistic
    config: FrequentistConfig = FrequentistConfig()
    statistic_type: type[RatioStatistic] = RatioStatistic

    def compute_result(self) -> CupedResult:
        raw = RatioZTest(self.control.post(self.statistic_type), self.treatment.post(self.statistic_type),
                         self.config).compute_result()
        with_pre = self.control.users_with_pre + self.treatment.users_with_pre
        theta = pooled_theta(self.control, self.treatment)
        if raw.error_message or not np.any(with_pre > 0):
            return CupedResult(raw, raw, theta * 0, 0.0 * with_pre, with_pre)
        effect, variance = adjusted_difference(self.control, self.treatment, theta, self.config.difference_type)
        adjusted = normal_test(effect, variance, self.config.alpha)
        # Where nobody has pre data the adjusted test is the raw one, exactly (not merely to rounding).
        none = with_pre == 0
        if np.any(none):
            adjusted = TestResult(*(np.where(none, getattr(raw, f), getattr(adjusted, f))
                                    for f in ("effect", "standard_error", "ci_lower", "ci_upper", "p_value")))
        reduction = 1 - _safe_divide(adjusted.standard_error**2, raw.standard_error**2)
        if np.ndim(adjusted.p_value) == 0:
            adjusted = TestResult(*(float(getattr(adjusted, f)) for f in
                                    ("effect", "standard_error", "ci_lower", "ci_upper", "p_value")))
            reduction = float(reduction)
        return CupedResult(raw, adjusted, theta, reduction, with_pre)
