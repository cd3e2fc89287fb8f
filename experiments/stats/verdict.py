"""What the comparisons mean, decided and put into words here and nowhere else.

The dashboard, the API and the experiments list show these words and outcome codes as they
are: a page that compared a p-value with alpha itself could disagree with the sentence above
it. Every decision is taken on the always-valid p-value (Holm-adjusted across treatments),
the one that stays valid however often the results are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from experiments.stats.comparisons import DEFAULT_CONFIG, AnalysisConfig, Arm, Comparison
from experiments.stats.power import PowerResult
from experiments.stats.srm import SrmResult


class Outcome(StrEnum):
    """The decision, as a code a page can style by (the words are in the verdict)."""

    WIN = "win"  # a treatment beats the control (always-valid test)
    LOSS = "loss"  # a treatment loses to the control
    NO_DIFFERENCE = "no_difference"  # the lift is known to be within +-target_effect
    NOT_ENOUGH_DATA = "not_enough_data"  # keep running
    CANNOT_COMPARE = "cannot_compare"  # no valid comparison (no clicks in the control, no control arm, ...)
    NO_DATA = "no_data"  # no users yet
    SRM = "srm"  # sample ratio mismatch: do not trust anything


@dataclass(frozen=True)
class ArmVerdict:
    key: str
    outcome: Outcome
    significant: bool  # outcome WIN or LOSS: always-valid Holm-adjusted p < alpha, enough users, a valid test
    text: str
    time_to_decision: str  # "decided", "now", "about 3 days", "no new users lately", "more than a year"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    text: str
    arms: tuple[ArmVerdict, ...]  # one per treatment, in the comparisons' order


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _days(days: int) -> str:
    return f"{days} day{'s' if days != 1 else ''}"


NO_NEW_USERS = "no new users lately"  # why there is no days-to-decision estimate, or
BEYOND_HORIZON = "more than a year"  # (PowerConfig.max_days)


def time_to_decision(power: PowerResult, significant: bool) -> str:
    """The power table's "time to decision" cell."""
    if significant:
        return "decided"
    days = power.days_to_decision
    if days is None:
        return NO_NEW_USERS if power.new_users_per_day <= 0 else BEYOND_HORIZON
    return "now" if days == 0 else f"about {_days(days)}"


def _arm_decision(control: Arm, treatment: Arm, comparison: Comparison, config: AnalysisConfig
                  ) -> tuple[Outcome, str]:
    """One treatment arm's outcome and sentence, decided by the always-valid (Holm-adjusted) p-value."""
    t_name, c_name = treatment.name or treatment.key, control.name or control.key
    seq = comparison.sequential
    if min(control.statistic.n, treatment.statistic.n) < config.min_users:
        return Outcome.NOT_ENOUGH_DATA, f"not enough data yet: fewer than {config.min_users} users in an arm"
    if seq.error_message:
        return Outcome.CANNOT_COMPARE, f"{t_name} vs {c_name}: cannot compare yet ({seq.error_message})"
    p = comparison.always_valid_p_adjusted
    p_text = f"always-valid p = {p:.3f}" if p >= 0.001 else "always-valid p < 0.001"
    detail = f"{_pct(seq.effect)} CTR, 95% CI {_pct(seq.ci_lower)} to {_pct(seq.ci_upper)}, {p_text}"
    if p < config.alpha:
        if seq.effect > 0:
            return Outcome.WIN, f"{t_name} beats {c_name}: {detail}"
        return Outcome.LOSS, f"{t_name} loses to {c_name}: {detail}"
    target = f"{config.target_effect * 100:.0f}%"
    if max(abs(seq.ci_lower), abs(seq.ci_upper)) < config.target_effect:
        return (Outcome.NO_DIFFERENCE, f"no meaningful difference between {t_name} and {c_name}: the lift is "
                                       f"within ±{target} ({detail})")
    days = comparison.power.days_to_decision
    if days is None:
        why = (NO_NEW_USERS if comparison.power.new_users_per_day <= 0 else
               f"{BEYOND_HORIZON} at today's traffic to detect a {target} lift")
        return Outcome.NOT_ENOUGH_DATA, f"not enough data yet ({why}): {t_name} vs {c_name}: {detail}"
    more = max(days, 1)
    return (Outcome.NOT_ENOUGH_DATA, f"not enough data yet: about {more} more day{'s' if more != 1 else ''} at "
                                     f"today's traffic to detect a {target} lift ({t_name} vs {c_name}: {detail})")


def arm_verdict(control: Arm, treatment: Arm, comparison: Comparison, config: AnalysisConfig) -> ArmVerdict:
    outcome, text = _arm_decision(control, treatment, comparison, config)
    significant = outcome in (Outcome.WIN, Outcome.LOSS)
    return ArmVerdict(comparison.key, outcome, significant, text, time_to_decision(comparison.power, significant))


def _headline(outcomes: Sequence[Outcome]) -> Outcome:
    """The experiment's outcome: a win if any arm wins, else a loss if any loses, else the arms' common outcome."""
    for outcome in (Outcome.WIN, Outcome.LOSS):
        if outcome in outcomes:
            return outcome
    if outcomes and all(o is Outcome.NO_DIFFERENCE for o in outcomes):
        return Outcome.NO_DIFFERENCE
    if outcomes and all(o is Outcome.CANNOT_COMPARE for o in outcomes):
        return Outcome.CANNOT_COMPARE
    return Outcome.NOT_ENOUGH_DATA


def experiment_verdict(arms: Sequence[Arm], comparisons: Sequence[Comparison], srm: SrmResult,
                       config: AnalysisConfig = DEFAULT_CONFIG) -> Verdict:
    """The headline: no data / SRM warning / one sentence per treatment arm."""
    control = next(arm for arm in arms if arm.is_control)
    by_key = {arm.key: arm for arm in arms}
    per_arm = tuple(arm_verdict(control, by_key[c.key], c, config) for c in comparisons)
    if sum(arm.statistic.n for arm in arms) == 0:
        return Verdict(Outcome.NO_DATA, "no data yet", per_arm)
    if srm.flagged:
        return Verdict(Outcome.SRM, f"do not trust these results: {srm.message}", per_arm)
    return Verdict(_headline([v.outcome for v in per_arm]), "; ".join(v.text for v in per_arm), per_arm)


def no_control_verdict(experiment_id: int) -> str:
    """Why an experiment cannot be analysed at all (the API answers it as a 400)."""
    return f"experiment {experiment_id} has no control variant"


def _percent(x: float) -> str:
    return f"{x * 100:.0f} %"


def interleaving_verdict(name_a: str, name_b: str, users: int, credits: int, sequential, first_pick,
                         config) -> tuple[Outcome, str]:
    """An interleaving experiment's outcome and sentence, decided on the always-valid test of B's share of credits.

    ``sequential``: the share with its confidence sequence and always-valid p (an ``Estimate``);
    ``first_pick``: the coin's balance check (``interleaving.BalanceResult``); ``config``: an
    ``InterleavingConfig``. WIN: users prefer B's (the challenger's) picks; LOSS: A's. The
    sentence reads like "users prefer CrossMuSim's picks: 58 % of credited clicks, 95 % CI 55-61 %".
    """
    if users == 0:
        return Outcome.NO_DATA, "no data yet"
    if first_pick.flagged:
        return Outcome.SRM, f"do not trust these results: {first_pick.message}"
    if users < config.min_users:
        return Outcome.NOT_ENOUGH_DATA, f"not enough data yet: {users} users, fewer than {config.min_users}"
    if credits == 0 or None in (sequential.effect, sequential.ci_lower, sequential.ci_upper, sequential.p_value):
        return Outcome.CANNOT_COMPARE, "cannot compare yet: no credited clicks"
    share, low, high, p = sequential.effect, sequential.ci_lower, sequential.ci_upper, sequential.p_value
    confidence = f"{(1 - config.alpha) * 100:.0f} %"
    p_text = f"always-valid p = {p:.3f}" if p >= 0.001 else "always-valid p < 0.001"
    if p < config.alpha:
        if share > 0.5:
            return (Outcome.WIN, f"users prefer {name_b}'s picks: {_percent(share)} of credited clicks, "
                                 f"{confidence} CI {_percent(low).rstrip(' %')}-{_percent(high)} ({p_text})")
        return (Outcome.LOSS, f"users prefer {name_a}'s picks: {_percent(1 - share)} of credited clicks, "
                              f"{confidence} CI {_percent(1 - high).rstrip(' %')}-{_percent(1 - low)} ({p_text})")
    return (Outcome.NOT_ENOUGH_DATA, f"no clear preference yet: {name_b}'s picks have {_percent(share)} of credited "
                                     f"clicks, {confidence} CI {_percent(low).rstrip(' %')}-{_percent(high)} "
                                     f"({p_text}; {users:,} users)")
