"""Tests of a team-draft interleaving experiment: which ranker's picks do users click? (pure numpy/scipy)

The user is the unit. Every user in the experiment sees pages merged from both rankers
(``experiments.team_draft``); per user a = clicks credited to team A (the control's ranker),
b = clicks credited to team B. Two readings of the same credits:

- **share of B credits** S = sum(b) / sum(a + b): a ratio metric with the user as unit, so its
  variance is the delta method's (``RatioStatistic`` with m = b, d = a + b). S = 0.5 when users
  have no preference. This is the headline ("58 % of credited clicks").
- **preference for B** = the mean over users with any credit of (b - a) / (a + b), in [-1, 1]:
  the per-query score of Chapelle, Joachims, Radlinski and Yue (2012), read per user (their
  wins/losses score when a user clicks once), with a user-level t-interval.

Both are tested against "no preference" (S = 0.5, preference = 0); the always-valid version of
the share test (``sequential``: the same normal-mixture confidence sequence as the A/B tests,
n = users) is the one to read daily. Two balance checks guard the draft itself: each team should
pick first in half of the pages (an exact binomial test; the coins are independent per request),
and clicks at each position should split between the teams as the slots there did (a chi-square
over positions, meaningful under A/A, when the rankers are the same).

Every field may be an array (days, simulated experiments): the formulas are elementwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, chi2, norm
from scipy.stats import t as student_t

from experiments.stats.frequentist import TestResult, normal_test
from experiments.stats.sequential import always_valid_p_value, confidence_sequence_half_width
from experiments.stats.statistics import Number, RatioStatistic, SampleMeanStatistic, _safe_divide

BALANCE_P_THRESHOLD = 0.001  # like SRM: checked on every look, so a strict bar
NO_PREFERENCE = 0.5


@dataclass(frozen=True)
class InterleavingConfig:
    alpha: float = 0.05
    # Users at which the confidence sequence is tightest; fixed before the start (see sequential.py).
    n_star: float = 2_000
    min_users: int = 100  # no verdict before this many users with an interleaved page

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.n_star <= 0:
            raise ValueError("n_star must be > 0")


@dataclass(frozen=True)
class InterleavingStatistic:
    """Sufficient statistics of one interleaving experiment (or of many: array fields).

    ``credits``: per user m = b, d = a + b over every user with an interleaved page (n = users);
    ``preference``: per user with a + b > 0, x = (b - a) / (a + b);
    ``pages`` and ``a_first``: pages served, and those where team A picked first.
    """

    credits: RatioStatistic
    preference: SampleMeanStatistic
    pages: Number
    a_first: Number

    @classmethod
    def from_users(cls, a: np.ndarray, b: np.ndarray, pages: np.ndarray, a_first: np.ndarray,
                   axis: int = -1, present: np.ndarray | None = None) -> InterleavingStatistic:
        """From per-user arrays (users on ``axis``): credits of A and B, pages, pages where A picked first.

        ``present`` (same shape, boolean): only these users count (e.g. those who arrived by a given day)."""
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        w = np.ones_like(a) if present is None else np.asarray(present, dtype=float)
        total = a + b
        credited = (total > 0) * w
        x = np.where(total > 0, _safe_divide(b - a, np.where(total > 0, total, 1.0)), 0.0)
        return cls(
            credits=RatioStatistic(w.sum(axis=axis), (w * b).sum(axis=axis), (w * total).sum(axis=axis),
                                   (w * b * b).sum(axis=axis), (w * total * total).sum(axis=axis),
                                   (w * b * total).sum(axis=axis)),
            preference=SampleMeanStatistic(credited.sum(axis=axis), (credited * x).sum(axis=axis),
                                           (credited * x * x).sum(axis=axis)),
            pages=(w * np.asarray(pages, dtype=float)).sum(axis=axis),
            a_first=(w * np.asarray(a_first, dtype=float)).sum(axis=axis),
        )

    @property
    def users(self) -> Number:
        return self.credits.n

    @property
    def credits_a(self) -> Number:
        return self.credits.sum_d - self.credits.sum_m

    @property
    def credits_b(self) -> Number:
        return self.credits.sum_m


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


def share_test(stat: InterleavingStatistic, alpha: float = 0.05) -> TestResult:
    """Share of B credits with its delta-method CI; p of  H0: S = 0.5  (z = (S - 0.5) / se)."""
    credits = stat.credits
    with np.errstate(all="ignore"):
        centred = normal_test(credits.ratio - NO_PREFERENCE, credits.variance, alpha)
    return TestResult(effect=_scalar(credits.ratio), standard_error=centred.standard_error,
                      ci_lower=_scalar(centred.ci_lower + NO_PREFERENCE),
                      ci_upper=_scalar(centred.ci_upper + NO_PREFERENCE), p_value=centred.p_value)


def sequential_share_test(stat: InterleavingStatistic, config: InterleavingConfig = InterleavingConfig()) -> TestResult:
    """The share's always-valid p-value and confidence sequence at this look (n = users)."""
    credits = stat.credits
    with np.errstate(all="ignore"):
        variance = credits.variance
        effect = credits.ratio - NO_PREFERENCE
        half = confidence_sequence_half_width(variance, credits.n, config.alpha, config.n_star)
        p = always_valid_p_value(effect, variance, credits.n, config.alpha, config.n_star)
    return TestResult(effect=_scalar(credits.ratio), standard_error=_scalar(np.sqrt(variance)),
                      ci_lower=_scalar(credits.ratio - half), ci_upper=_scalar(credits.ratio + half), p_value=p)


def preference_test(stat: InterleavingStatistic, alpha: float = 0.05) -> TestResult:
    """Mean per-user preference with a t-interval:  se = sd / sqrt(n),  sd with the 1/(n - 1) normalisation."""
    pref = stat.preference
    n = np.asarray(pref.n, dtype=float)
    with np.errstate(all="ignore"):
        se = np.sqrt(pref.variance * n / (n - 1) / n)
        t = _safe_divide(pref.mean, se)
        df = np.maximum(n - 1, 1)
        p = 2 * student_t.sf(np.abs(t), df)
        half = student_t.ppf(1 - alpha / 2, df) * se
    return TestResult(effect=_scalar(pref.mean), standard_error=_scalar(se), ci_lower=_scalar(pref.mean - half),
                      ci_upper=_scalar(pref.mean + half), p_value=_scalar(p))


@dataclass(frozen=True)
class BalanceResult:
    share: float  # observed share (of first picks for team A; of clicks for team B)
    p_value: float
    flagged: bool
    message: str


def first_pick_balance(pages: int, a_first: int, threshold: float = BALANCE_P_THRESHOLD) -> BalanceResult:
    """Exact two-sided binomial test of  a_first ~ Binomial(pages, 1/2)  (each request flips its own coin)."""
    pages, a_first = int(pages), int(a_first)
    if pages == 0:
        return BalanceResult(float("nan"), 1.0, False, "no pages yet")
    p = float(binomtest(a_first, pages, 0.5).pvalue)
    share = a_first / pages
    flagged = p < threshold
    words = (f"team A picked first in {share:.1%} of {pages:,} pages (binomial p = {p:.2g})"
             + ("; the coin is not fair: check the draft" if flagged else ""))
    return BalanceResult(share, p, flagged, words)


def position_balance(slots_a: np.ndarray, slots_b: np.ndarray, clicks_a: np.ndarray, clicks_b: np.ndarray,
                     threshold: float = BALANCE_P_THRESHOLD) -> BalanceResult:
    """Do clicks at each position split between the teams as that position's slots did?

    Per position p with c_p clicks, q_p = slots_b / (slots_a + slots_b):
    chi2 = sum_p (clicks_b - c_p q_p)^2 / (c_p q_p (1 - q_p)),  positions with clicks as degrees of freedom.
    Under A/A each click's team is a fair draw given its slot, so the test is calibrated; with two
    different rankers a preference shows up here too, so the check is read on A/A experiments.
    ``share`` is B's share of all credited clicks.
    """
    slots_a, slots_b, clicks_a, clicks_b = (np.asarray(x, dtype=float) for x in (slots_a, slots_b, clicks_a,
                                                                                 clicks_b))
    clicks = clicks_a + clicks_b
    slots = slots_a + slots_b
    usable = (clicks > 0) & (slots_a > 0) & (slots_b > 0)
    if not usable.any():
        return BalanceResult(float("nan"), 1.0, False, "no credited clicks yet")
    q = slots_b[usable] / slots[usable]
    expected = clicks[usable] * q
    statistic = float(np.sum((clicks_b[usable] - expected) ** 2 / (expected * (1 - q))))
    p = float(chi2.sf(statistic, int(usable.sum())))
    share = float(clicks_b.sum() / clicks.sum())
    flagged = p < threshold
    words = (f"clicks split between the teams as their slots did at each position (chi-square p = {p:.2g})"
             if not flagged else f"clicks at some positions do not split as the slots did (chi-square p = {p:.2g})")
    return BalanceResult(share, p, flagged, words)


def users_for_power(per_user_variance: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Users for a two-sided z-test to detect ``effect`` with ``power``:  n = (z_{1-a/2} + z_power)^2 v / effect^2.

    ``per_user_variance``: the variance of the estimate times the number of users it came from
    (for an A/B test, of both arms together, so n is the total over the arms)."""
    if effect == 0:
        return float("inf")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * z * per_user_variance / (effect * effect))
