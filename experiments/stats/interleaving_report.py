"""The report of an interleaving experiment: aggregate rows in, figures, series, verdict, JSON and CSV out.

The interleaving counterpart of ``report.analyse`` (an A/B report compares arms of users; here
every user saw both rankers, so there is one comparison of two teams). Inputs are the rows of
the worker's interleaving aggregates (``InterleavingRows``, from ``experiments.analysis``); the
tests are ``interleaving``'s, the words ``verdict.interleaving_verdict``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np

from experiments.stats.aggregates import ArmSpec, ExperimentInfo
from experiments.stats.interleaving import (
    InterleavingConfig,
    InterleavingStatistic,
    first_pick_balance,
    position_balance,
    preference_test,
    sequential_share_test,
    share_test,
)
from experiments.stats.results import Estimate, json_safe
from experiments.stats.sequential import running_intersection, running_minimum
from experiments.stats.statistics import RatioStatistic, SampleMeanStatistic
from experiments.stats.verdict import interleaving_verdict

DEFAULT_INTERLEAVING_CONFIG = InterleavingConfig()


@dataclass(frozen=True)
class InterleavingRows:
    """One interleaving experiment's aggregate rows, as the cursor returns them."""

    # (credits A, credits B, users with exactly these totals, their pages, their pages where A picked first)
    users: Sequence[Sequence[int]]
    # (day, credits A, credits B, users, pages, a_first): the same table of cumulative per-user totals at the end of
    # each day, ordered by day
    daily: Sequence[Sequence] = ()
    # (position, pages, slots held by B, clicks credited to A, clicks credited to B), ordered by position
    positions: Sequence[Sequence[int]] = ()
    # (long listens of A's items, of B's items, users with exactly these totals): listens credit the team of the
    # item like clicks; the listening preference is shown beside the click one, the verdict stays on clicks
    listens: Sequence[Sequence[int]] = ()


def statistic_of(rows: Sequence[Sequence]) -> InterleavingStatistic:
    """Sufficient statistics from a frequency table of per-user (a, b) with counts, pages and first picks."""
    if not rows:
        return InterleavingStatistic(RatioStatistic(0, 0, 0, 0, 0, 0), SampleMeanStatistic(0, 0, 0), 0, 0)
    table = np.asarray([[float(x) for x in row[:5]] for row in rows])
    a, b, count, pages, a_first = table.T
    total = a + b
    credited = total > 0
    x = np.where(credited, (b - a) / np.where(credited, total, 1.0), 0.0)
    return InterleavingStatistic(
        credits=RatioStatistic(count.sum(), (count * b).sum(), (count * total).sum(), (count * b * b).sum(),
                               (count * total * total).sum(), (count * b * total).sum()),
        preference=SampleMeanStatistic((count * credited).sum(), (count * x).sum(), (count * x * x).sum()),
        pages=pages.sum(), a_first=a_first.sum())


@dataclass(frozen=True)
class Team:
    key: str
    name: str
    team: int  # 1 = A (the control's ranker), 2 = B


@dataclass(frozen=True)
class Balance:
    share: float | None
    p_value: float | None
    flagged: bool
    message: str


@dataclass(frozen=True)
class InterleavingResults:
    experiment_id: int
    name: str
    hypothesis: str
    status: str
    started_at: str | None
    age_days: float | None
    kind: str  # "interleaving"
    teams: list[Team]  # A then B
    users: int
    pages: int
    credits_a: int
    credits_b: int
    share_b: Estimate  # share of B credits, delta method, fixed horizon; p of H0: 0.5
    share_b_sequential: Estimate  # the same with the confidence sequence; p = always-valid (running minimum)
    preference: Estimate  # mean per-user (b - a) / (a + b), t-interval
    listens_a: int  # long listens (plays >= 30 s) of items team A drafted
    listens_b: int
    listen_share_b: Estimate  # B's share of the long listens, delta method with the user as unit; p of 0.5
    first_pick: Balance  # team A picked first in half the pages? (binomial)
    position_balance: Balance  # clicks split as slots at each position? (chi-square; read under A/A)
    verdict: str
    outcome: str
    significant: bool
    # series: {"day", "users", "share_b", "ci_lower", "ci_upper", "cs_lower", "cs_upper", "always_valid_p"}
    series: dict[str, list]
    # positions: {"position", "pages", "slots_b", "clicks_a", "clicks_b", "share_b"} (B's share of the credits there)
    positions: dict[str, list]
    config: dict[str, float]
    computed_at: str
    analysis_seconds: float = field(default=0.0)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    def to_rows(self) -> list[list]:
        """CSV: one line per team with its credits, then the tests, then the positions."""
        rows: list[list] = [["team", "key", "name", "credits", "share_of_credits"]]
        total = self.credits_a + self.credits_b
        for team, credits in zip(self.teams, (self.credits_a, self.credits_b), strict=True):
            rows.append(["A" if team.team == 1 else "B", team.key, team.name, credits,
                         credits / total if total else ""])
        rows.append([])
        rows.append(["test", "effect", "ci_lower", "ci_upper", "p_value"])
        for name, est in (("share_b", self.share_b), ("share_b_always_valid", self.share_b_sequential),
                          ("preference_b", self.preference), ("listen_share_b", self.listen_share_b)):
            rows.append([name, *("" if v is None else v for v in (est.effect, est.ci_lower, est.ci_upper,
                                                                  est.p_value))])
        rows.append(["first_pick_a", self.first_pick.share, "", "", self.first_pick.p_value])
        rows.append([])
        rows.append(["position", "pages", "slots_b", "clicks_a", "clicks_b"])
        p = self.positions
        rows.extend([list(r) for r in zip(p["position"], p["pages"], p["slots_b"], p["clicks_a"], p["clicks_b"],
                                          strict=True)])
        return rows


def _daily_statistics(daily: Sequence[Sequence]) -> tuple[list[date], InterleavingStatistic | None]:
    """Per day (in order) the cumulative statistics, as one statistic with array fields."""
    days = sorted({row[0] for row in daily})
    if not days:
        return [], None
    by_day: dict = {d: [] for d in days}
    for row in daily:
        by_day[row[0]].append(row[1:])
    stats = [statistic_of(by_day[d]) for d in days]

    def stack(get):
        return np.array([get(s) for s in stats], dtype=float)

    credits = RatioStatistic(*(stack(lambda s, f=f: getattr(s.credits, f)) for f in
                               ("n", "sum_m", "sum_d", "sum_m2", "sum_d2", "sum_md")))
    preference = SampleMeanStatistic(*(stack(lambda s, f=f: getattr(s.preference, f)) for f in
                                       ("n", "sum", "sum_squares")))
    return days, InterleavingStatistic(credits, preference, stack(lambda s: s.pages), stack(lambda s: s.a_first))


def _series(daily: Sequence[Sequence], config: InterleavingConfig) -> tuple[dict, float | None, tuple]:
    """The charts' series, and the running always-valid p and confidence sequence of the last day."""
    days, stat = _daily_statistics(daily)
    if stat is None:
        return {k: [] for k in ("day", "users", "share_b", "ci_lower", "ci_upper", "cs_lower", "cs_upper",
                                "always_valid_p")}, None, (None, None)
    fixed, seq = share_test(stat, config.alpha), sequential_share_test(stat, config)
    # looks before min_users are skipped, as in the A/B series: the normal approximation is poor there
    early = np.asarray(stat.users) < config.min_users
    p = running_minimum(np.where(early, np.nan, np.asarray(seq.p_value, dtype=float)))
    lower, upper = running_intersection(np.where(early, np.nan, np.asarray(seq.ci_lower, dtype=float)),
                                        np.where(early, np.nan, np.asarray(seq.ci_upper, dtype=float)))
    series = {"day": [d.isoformat() for d in days], "users": np.asarray(stat.users).astype(int).tolist(),
              "share_b": np.asarray(fixed.effect).tolist(), "ci_lower": np.asarray(fixed.ci_lower).tolist(),
              "ci_upper": np.asarray(fixed.ci_upper).tolist(), "cs_lower": np.where(np.isinf(lower), np.nan,
                                                                                    lower).tolist(),
              "cs_upper": np.where(np.isinf(upper), np.nan, upper).tolist(), "always_valid_p": p.tolist()}
    return series, float(p[-1]), (float(lower[-1]), float(upper[-1]))


def _positions(rows: Sequence[Sequence[int]]) -> dict[str, list]:
    table = [tuple(int(x) for x in row[:5]) for row in rows]
    out = {"position": [r[0] for r in table], "pages": [r[1] for r in table], "slots_b": [r[2] for r in table],
           "clicks_a": [r[3] for r in table], "clicks_b": [r[4] for r in table]}
    out["share_b"] = [r[4] / (r[3] + r[4]) if r[3] + r[4] else None for r in table]
    return out


def _balance(result) -> Balance:
    share = None if result.share != result.share else result.share  # nan -> None
    return Balance(share, result.p_value, result.flagged, result.message)


def analyse_interleaving(info: ExperimentInfo, team_a: ArmSpec, team_b: ArmSpec, rows: InterleavingRows,
                         config: InterleavingConfig = DEFAULT_INTERLEAVING_CONFIG) -> InterleavingResults:
    """The whole report of one interleaving experiment (team A = the control variant's ranker)."""
    stat = statistic_of(rows.users)
    listens = statistic_of([(a, b, users, 0, 0) for a, b, users in rows.listens])
    with np.errstate(all="ignore"):
        fixed, seq, pref = share_test(stat, config.alpha), sequential_share_test(stat, config), preference_test(
            stat, config.alpha)
    listen_share = (Estimate.of(share_test(listens, config.alpha)) if listens.credits_a + listens.credits_b > 0
                    else Estimate(None, None, None, None, None, "no long listens yet"))
    series, running_p, (cs_lower, cs_upper) = _series(rows.daily, config)
    if running_p is not None and stat.users >= config.min_users:  # today's look folded into the running ones
        p_now = min(running_p, float(seq.p_value))
        cs_lower, cs_upper = max(cs_lower, float(seq.ci_lower)), min(cs_upper, float(seq.ci_upper))
    else:
        p_now, cs_lower, cs_upper = float(seq.p_value), float(seq.ci_lower), float(seq.ci_upper)
    positions = _positions(rows.positions)
    first = first_pick_balance(int(stat.pages), int(stat.a_first))
    pages_p = np.asarray(positions["pages"], dtype=float)
    slots_b = np.asarray(positions["slots_b"], dtype=float)
    by_position = position_balance(pages_p - slots_b, slots_b, positions["clicks_a"], positions["clicks_b"])
    sequential = Estimate.of(seq, p_now)
    sequential = Estimate(sequential.effect, sequential.standard_error, cs_lower, cs_upper, sequential.p_value,
                          sequential.error)
    outcome, text = interleaving_verdict(team_a.name or team_a.key, team_b.name or team_b.key, int(stat.users),
                                         int(stat.credits_a + stat.credits_b), sequential, first, config)
    return InterleavingResults(
        experiment_id=info.experiment_id, name=info.name, hypothesis=info.hypothesis, status=info.status,
        started_at=info.started_at, age_days=info.age_days, kind="interleaving",
        teams=[Team(team_a.key, team_a.name or team_a.key, 1), Team(team_b.key, team_b.name or team_b.key, 2)],
        users=int(stat.users), pages=int(stat.pages), credits_a=int(stat.credits_a), credits_b=int(stat.credits_b),
        share_b=Estimate.of(fixed), share_b_sequential=sequential, preference=Estimate.of(pref),
        listens_a=int(listens.credits_a), listens_b=int(listens.credits_b), listen_share_b=listen_share,
        first_pick=_balance(first), position_balance=_balance(by_position), verdict=text, outcome=outcome.value,
        significant=outcome.value in ("win", "loss"), series=series, positions=positions,
        config={"alpha": config.alpha, "n_star": config.n_star, "min_users": config.min_users},
        computed_at=info.computed_at,
    )
