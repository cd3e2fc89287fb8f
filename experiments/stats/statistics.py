"""Sufficient statistics of the metrics we test, one frozen dataclass per shape of metric.

The analysis never sees raw events: each arm arrives as a handful of sums that the event
pipeline keeps up to date (users, sums, sums of squares, cross-products). Every formula
downstream is a function of these sums only.

Fields may be plain numbers or numpy arrays of equal shape: the same code then analyses
one experiment, a time series of cumulative days, or thousands of simulated experiments
at once.

Moments use the 1/n (maximum-likelihood) normalisation. The delta method is asymptotic,
so 1/n and 1/(n-1) agree to O(1/n); 1/n makes a ratio metric with one impression per
user reduce exactly to the textbook Wald two-proportion test.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Union

import numpy as np

Number = Union[float, int, np.ndarray]  # noqa: UP007 - readable alias for scalars or arrays


def _as_float(value: Number) -> Number:
    return np.asarray(value, dtype=float) if isinstance(value, np.ndarray) else float(value)


def _require(condition: Number, message: str) -> None:
    if not bool(np.all(condition)):
        raise ValueError(message)


def _safe_divide(numerator: Number, denominator: Number) -> Number:
    """numerator / denominator, with nan (no warning, no exception) where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where(np.asarray(denominator) == 0, np.nan, np.true_divide(numerator, denominator))
    return float(result) if np.ndim(result) == 0 else result


class _Additive:
    """Sufficient statistics of disjoint groups of units add field by field."""

    def __add__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class ProportionStatistic(_Additive):
    """n independent Bernoulli trials with ``sum`` successes (e.g. impressions and clicks)."""

    n: Number
    sum: Number

    def __post_init__(self):
        object.__setattr__(self, "n", _as_float(self.n))
        object.__setattr__(self, "sum", _as_float(self.sum))
        _require(np.asarray(self.n) >= 0, "n must be >= 0")
        _require((np.asarray(self.sum) >= 0) & (np.asarray(self.sum) <= np.asarray(self.n)), "need 0 <= sum <= n")

    @property
    def mean(self) -> Number:
        return _safe_divide(self.sum, self.n)

    @property
    def variance(self) -> Number:
        """Per-trial variance p (1 - p)."""
        return self.mean * (1 - self.mean)


@dataclass(frozen=True)
class SampleMeanStatistic(_Additive):
    """n units with sum x and sum x^2 of a per-unit value."""

    n: Number
    sum: Number
    sum_squares: Number

    def __post_init__(self):
        for name in ("n", "sum", "sum_squares"):
            object.__setattr__(self, name, _as_float(getattr(self, name)))
        _require(np.asarray(self.n) >= 0, "n must be >= 0")
        _require(np.asarray(self.sum_squares) >= 0, "sum_squares must be >= 0")
        # Cauchy-Schwarz: (sum x)^2 <= n sum x^2, with a little room for rounding.
        _require(np.asarray(self.sum) ** 2 <= np.asarray(self.n) * np.asarray(self.sum_squares) * (1 + 1e-9) + 1e-9,
                 "sum^2 > n * sum_squares: not the moments of real data")

    @property
    def mean(self) -> Number:
        return _safe_divide(self.sum, self.n)

    @property
    def variance(self) -> Number:
        """Per-unit variance  E[x^2] - E[x]^2  (1/n normalisation, clipped at 0 against rounding)."""
        return np.maximum(_safe_divide(self.sum_squares, self.n) - self.mean**2, 0.0)


@dataclass(frozen=True)
class RatioStatistic(_Additive):
    """A ratio metric sum(m) / sum(d) over n units, e.g. CTR = clicks / impressions with the user as unit.

    Per user i: m_i = clicks, d_i = impressions. The six sums are all the delta method needs.
    A rate like CTR cannot have more events than chances (sum_m <= sum_d); ``MeanRatioStatistic`` drops
    that check for ratios such as listened seconds per click.
    """

    numerator_within_denominator: ClassVar[bool] = True

    n: Number
    sum_m: Number
    sum_d: Number
    sum_m2: Number
    sum_d2: Number
    sum_md: Number

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _as_float(getattr(self, f.name)))
        _require(np.asarray(self.n) >= 0, "n must be >= 0")
        for name in ("sum_m", "sum_d", "sum_m2", "sum_d2"):
            _require(np.asarray(getattr(self, name)) >= 0, f"{name} must be >= 0")
        if self.numerator_within_denominator:
            _require(np.asarray(self.sum_m) <= np.asarray(self.sum_d) * (1 + 1e-12),
                     "sum_m > sum_d: more clicks than impressions")
        _require(np.asarray(self.sum_md) ** 2 <= np.asarray(self.sum_m2) * np.asarray(self.sum_d2) * (1 + 1e-9) + 1e-9,
                 "sum_md^2 > sum_m2 * sum_d2: not the moments of real data")

    @classmethod
    def from_units(cls, m: np.ndarray, d: np.ndarray, axis: int = -1) -> RatioStatistic:
        """The sums of per-unit arrays (the last axis is the unit by default)."""
        m = np.asarray(m, dtype=float)
        d = np.asarray(d, dtype=float)
        return cls(n=np.sum(np.ones_like(m), axis=axis), sum_m=m.sum(axis=axis), sum_d=d.sum(axis=axis),
                   sum_m2=(m * m).sum(axis=axis), sum_d2=(d * d).sum(axis=axis), sum_md=(m * d).sum(axis=axis))

    @property
    def numerator(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.n, self.sum_m, self.sum_m2)

    @property
    def denominator(self) -> SampleMeanStatistic:
        return SampleMeanStatistic(self.n, self.sum_d, self.sum_d2)

    @property
    def covariance(self) -> Number:
        """Per-unit covariance of m and d:  E[md] - E[m] E[d]."""
        return _safe_divide(self.sum_md, self.n) - self.numerator.mean * self.denominator.mean

    @property
    def ratio(self) -> Number:
        """The pooled ratio R = sum(m) / sum(d) (the CTR)."""
        return _safe_divide(self.sum_m, self.sum_d)

    @property
    def variance(self) -> Number:
        """Delta-method variance of R, per the whole sample (not per unit).

        Var(R) = 1/n * ( var_m / mu_d^2  -  2 mu_m cov_md / mu_d^3  +  mu_m^2 var_d / mu_d^4 )
               = 1/n * E[(m - R d)^2] / mu_d^2        (the same number, as a linearisation)
        """
        mu_m, mu_d = self.numerator.mean, self.denominator.mean
        per_unit = (self.numerator.variance / mu_d**2 - 2 * mu_m * self.covariance / mu_d**3
                    + mu_m**2 * self.denominator.variance / mu_d**4)
        return _safe_divide(np.maximum(per_unit, 0.0), self.n)


@dataclass(frozen=True)
class MeanRatioStatistic(RatioStatistic):
    """A ratio metric whose numerator may exceed its denominator (listened seconds per click): the same
    sums and delta method as ``RatioStatistic``, without the events-per-chance bound."""

    numerator_within_denominator: ClassVar[bool] = False
