"""The ship decision over several metrics: Spotify's risk-aware rule, decided and worded here.

Schultzberg, Ankargren and Franberg (2024), "Risk-aware product decisions in A/B tests with multiple
metrics" (the rule spotify-confidence implements in ``multiple_comparison.py``): each metric of an
experiment has a role, and a treatment ships only when

  1. a success metric is significantly better: one-sided superiority test at alpha / (number of success
     metrics) (Bonferroni over the success metrics: one of them is enough, so their errors add up);
  2. every guardrail is significantly non-inferior: one-sided test of  lift > -margin  (in its better
     direction) at alpha, uncorrected: all must pass, so the false-ship risk cannot add up over them
     (an intersection-union test);
  3. no metric (success, guardrail or secondary) is significantly worse: one-sided deterioration test.

So P(ship) <= alpha / S when no success metric improves, and <= alpha when one guardrail is exactly at its
margin, whatever the other metrics do. Power needs the opposite correction: all of the 1 + G tests must
reject, so the planner gives each a type II error of beta / (1 + G) (``plan_users``).

Every test is one-sided at the given level, so ``alpha`` here is one-sided: the default 0.025 is the half of
the page's two-sided 0.05, and "significantly better" means the page's 95 % interval lies above 0.

The tests run on the looks so far: a ``Critical`` gives the one-sided critical z per look for a level
(fixed horizon: one look; group-sequential: the design's boundaries; always-valid: the confidence
sequence's), and a test has rejected once its z has crossed at some look. Lifts are relative; a lower-is-
better metric (skip rate) has its lift's sign turned so that "better" is always positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.special import ndtri

from experiments.stats.metrics import Direction

# One-sided critical z per look for a one-sided level: shape () or (looks,), broadcast against the z paths.
Critical = Callable[[float], np.ndarray | float]


class Role(StrEnum):
    SUCCESS = "success"
    GUARDRAIL = "guardrail"
    SECONDARY = "secondary"


class Decision(StrEnum):
    SHIP = "ship"
    WORSE = "worse"  # a metric is significantly worse: do not ship
    GUARDRAIL = "guardrail"  # a guardrail is not (yet) shown non-inferior
    NOT_BETTER = "not_better"  # no success metric is (yet) significantly better
    NOT_ENOUGH_DATA = "not_enough_data"  # too few users to read any test (set by the caller)


@dataclass(frozen=True)
class DecisionConfig:
    alpha: float = 0.025  # one-sided level of every test (the two-sided 0.05 of the page, per side)
    deterioration_alpha: float = 0.025

    def __post_init__(self):
        if not (0 < self.alpha < 1 and 0 < self.deterioration_alpha < 1):
            raise ValueError("alphas must be in (0, 1)")


@dataclass(frozen=True)
class MetricEvidence:
    """One metric of one treatment: its relative lift and standard error at each look.

    The last axis is always the looks (a scalar is one look); leading axes are batches of experiments, so a
    batch read at one look has shape (experiments, 1).
    """

    key: str
    label: str
    role: Role
    direction: Direction
    effect: np.ndarray | float
    standard_error: np.ndarray | float
    margin: float = 0.0  # guardrails: the relative lift in the worse direction that is still acceptable (>= 0)

    @property
    def better(self) -> np.ndarray:
        """The lift turned so that positive is better."""
        sign = 1.0 if self.direction is Direction.HIGHER_IS_BETTER else -1.0
        return sign * np.asarray(self.effect, dtype=float)


def fixed_horizon(alpha: float) -> float:
    """One look: z_{1-alpha}."""
    return float(ndtri(1 - alpha))


def _rejected(z: np.ndarray, critical: np.ndarray | float) -> np.ndarray:
    """Crossed at some look (last axis); nan looks never cross."""
    z = np.atleast_1d(np.nan_to_num(np.asarray(z, dtype=float), nan=-np.inf))
    return (z >= critical).any(axis=-1)


@dataclass(frozen=True)
class MetricTests:
    """Each test's outcome for one metric (arrays when the inputs were batches of experiments)."""

    key: str
    superior: np.ndarray  # better at alpha / S (counts for success metrics only)
    non_inferior: np.ndarray  # guardrails: better than -margin at alpha
    worse: np.ndarray  # deterioration at deterioration_alpha


def test_metrics(evidence: Sequence[MetricEvidence], critical: Critical,
                 config: DecisionConfig = DecisionConfig()) -> list[MetricTests]:
    """The three one-sided tests of every metric."""
    successes = max(1, sum(e.role is Role.SUCCESS for e in evidence))
    out = []
    for e in evidence:
        se = np.asarray(e.standard_error, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_better = e.better / se
            z_margin = (e.better + e.margin) / se
        out.append(MetricTests(
            e.key,
            superior=_rejected(z_better, critical(config.alpha / successes)),
            non_inferior=_rejected(z_margin, critical(config.alpha)),
            worse=_rejected(-z_better, critical(config.deterioration_alpha))))
    return out


def ship(evidence: Sequence[MetricEvidence], critical: Critical, config: DecisionConfig = DecisionConfig()
         ) -> np.ndarray:
    """True where the rule ships (vectorised over leading batch axes)."""
    tests = test_metrics(evidence, critical, config)
    better = np.logical_or.reduce([t.superior for t, e in zip(tests, evidence, strict=True)
                                   if e.role is Role.SUCCESS] or [np.asarray(False)])
    guarded = np.logical_and.reduce([t.non_inferior for t, e in zip(tests, evidence, strict=True)
                                     if e.role is Role.GUARDRAIL] or [np.asarray(True)])
    worse = np.logical_or.reduce([t.worse for t in tests])
    return np.squeeze(better & guarded & ~worse)


@dataclass(frozen=True)
class ShipDecision:
    decision: Decision
    ship: bool
    text: str
    blocking: tuple[str, ...]  # metric keys that block (worse, or guardrails not yet non-inferior)
    tests: tuple[MetricTests, ...]


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _worse_sign(e: MetricEvidence) -> float:
    return -1.0 if e.direction is Direction.HIGHER_IS_BETTER else 1.0


def _last(x) -> float:
    return float(np.atleast_1d(np.asarray(x, dtype=float))[-1])


def decide(treatment: str, evidence: Sequence[MetricEvidence], critical: Critical,
           config: DecisionConfig = DecisionConfig()) -> ShipDecision:
    """One treatment's decision in words, naming what blocks it."""
    tests = test_metrics(evidence, critical, config)
    by_key = {e.key: e for e in evidence}

    def said(key: str) -> str:
        e = by_key[key]
        effect = _last(e.effect)
        return f"{e.label} {_pct(effect)}" if np.isfinite(effect) else f"{e.label} (no estimate yet)"

    worse = [t.key for t in tests if bool(np.all(t.worse))]
    if worse:
        return ShipDecision(Decision.WORSE, False, f"do not ship {treatment}: significantly worse on "
                            + ", ".join(said(k) for k in worse), tuple(worse), tuple(tests))
    successes = [t for t in tests if by_key[t.key].role is Role.SUCCESS]
    better = [t.key for t in successes if bool(np.all(t.superior))]
    if not better:
        names = ", ".join(said(t.key) for t in successes) or "no success metric chosen"
        return ShipDecision(Decision.NOT_BETTER, False,
                            f"do not ship {treatment} yet: not significantly better on {names}", (), tuple(tests))
    open_guards = [t.key for t in tests
                   if by_key[t.key].role is Role.GUARDRAIL and not bool(np.all(t.non_inferior))]
    if open_guards:
        parts = [f"{said(k)} (margin {_pct(_worse_sign(by_key[k]) * by_key[k].margin)})" for k in open_guards]
        return ShipDecision(Decision.GUARDRAIL, False,
                            f"do not ship {treatment} yet: {said(better[0])} is better, but guardrail "
                            + ", ".join(parts) + " is not shown non-inferior", tuple(open_guards), tuple(tests))
    guards = [t.key for t in tests if by_key[t.key].role is Role.GUARDRAIL]
    guard_text = f"; guardrails non-inferior ({', '.join(said(k) for k in guards)})" if guards else ""
    return ShipDecision(Decision.SHIP, True, f"ship {treatment}: {said(better[0])} is significantly better"
                        f"{guard_text}; no metric significantly worse", (), tuple(tests))


def plan_users(per_user_variances: Sequence[float], effects: Sequence[float], roles: Sequence[Role],
               config: DecisionConfig = DecisionConfig(), power: float = 0.8, inflation: float = 1.0) -> float:
    """Users per arm so that the rule ships with probability >= ``power`` at the design effects.

    ``per_user_variances[i]``: n x Var(relative lift of metric i) at n users per arm; ``effects[i]``: the
    design's better-direction lift for a success metric, the margin for a guardrail (true lift 0 at the
    design). Each of the 1 + G tests that must reject gets power 1 - beta/(1 + G) (Bonferroni on beta), the
    success test alpha / S. n_i = (z_{1-alpha_i} + z_{1-beta_i})^2 var_i / effect_i^2; the plan is the largest,
    times the group-sequential ``inflation`` factor when the test reads daily.
    """
    s = sum(r is Role.SUCCESS for r in roles)
    g = sum(r is Role.GUARDRAIL for r in roles)
    beta = (1 - power) / (1 + g)
    needed = 0.0
    for var, effect, role in zip(per_user_variances, effects, roles, strict=True):
        if role is Role.SECONDARY:
            continue
        alpha = config.alpha / max(s, 1) if role is Role.SUCCESS else config.alpha
        needed = max(needed, (ndtri(1 - alpha) + ndtri(1 - beta)) ** 2 * var / effect**2)
    return float(needed * inflation)
