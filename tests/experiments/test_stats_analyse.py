"""The core's one entry point, ``report.analyse``, and the list's ``report.summarise``, on hand-made aggregate rows.

No database: the rows are built here from simulated per-user arrays, in the shapes the queries
of experiments/analysis.py return, so every expected figure is computed independently of SQL.
"""

import ast
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from experiments.stats.aggregates import AggregateRows, ArmSpec, ExperimentInfo
from experiments.stats.frequentist import RatioZTest
from experiments.stats.report import analyse, summarise
from experiments.stats.results import VariantRow
from experiments.stats.statistics import RatioStatistic
from tests.experiments.stats_fixtures import propensities

ROOT = Path(__file__).resolve().parents[2]
DAY0 = date(2026, 11, 1)
INFO = ExperimentInfo(7, "hand-made", "", "running", None, None, "2026-11-15T00:00:00+00:00")
ARMS = [ArmSpec(11, "a", "A", 50.0, True), ArmSpec(12, "b", "B", 50.0, False)]


def simulate(rng, users: dict[int, int], lifts: dict[int, float], days: int = 14):
    """Aggregate rows of a simulated experiment, and the final per-user (clicks, impressions) per arm id."""
    frequencies, daily, finals = [], [], {}
    for arm_id, n in users.items():
        arrival = rng.integers(0, days, size=n)
        rate = rng.gamma(1.0, 1.0, size=n)
        p = propensities(rng, n, lifts.get(arm_id, 0.0))
        clicks, imps = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for day in range(days):
            a = arrival <= day
            new = np.where(a, rng.poisson(rate) + (arrival == day), 0)
            imps += new
            clicks += rng.binomial(new, p)
            daily.append((arm_id, DAY0 + timedelta(days=day), int(a.sum()), int(clicks[a].sum()), int(imps[a].sum()),
                          int((clicks[a] ** 2).sum()), int((imps[a] ** 2).sum()), int((imps[a] * clicks[a]).sum())))
        pairs, counts = np.unique(np.stack([imps, clicks], axis=1), axis=0, return_counts=True)
        frequencies += [(arm_id, int(i), int(c), int(w)) for (i, c), w in zip(pairs, counts, strict=True)]
        finals[arm_id] = (clicks, imps)
    daily.sort(key=lambda row: row[1])
    positions = [(arm_id, k, 100, 10 - k) for arm_id in users for k in range(1, 4)]
    return AggregateRows(frequencies, daily, positions), finals


@pytest.fixture(scope="module")
def winner():
    rows, finals = simulate(np.random.default_rng(1), {11: 4000, 12: 4000}, {12: 0.3})
    return rows, finals, analyse(INFO, ARMS, rows)


def test_the_report_is_the_per_user_statistics(winner):
    rows, finals, results = winner
    stats = {k: RatioStatistic.from_units(*finals[k]) for k in finals}
    a, b = results.variants
    assert (a.key, a.users, a.impressions, a.clicks) == ("a", 4000, int(finals[11][1].sum()), int(finals[11][0].sum()))
    assert b.ctr == pytest.approx(stats[12].ratio, rel=1e-12)
    expected = RatioZTest(stats[11], stats[12]).compute_result()
    assert (b.lift, b.p_value) == pytest.approx((expected.effect, expected.p_value), rel=1e-9)
    ctr = finals[11][0] / finals[11][1]
    assert results.histogram["counts"]["a"] == np.bincount(np.minimum((ctr * 20).astype(int), 19),
                                                           minlength=20).tolist()
    assert results.series["b"]["ctr"][-1] == pytest.approx(b.ctr, rel=1e-12)  # last cumulative day = the totals
    assert results.positions["b"] == {"position": [1, 2, 3], "impressions": [100] * 3, "clicks": [9, 8, 7],
                                      "ctr": [0.09, 0.08, 0.07]}


def test_the_decision_is_in_the_result_not_left_to_the_page(winner):
    results = winner[2]
    comparison, power = results.comparisons[0], results.power[0]
    assert results.verdict.startswith("B beats A: +") and results.outcome == "win"
    assert comparison.significant and comparison.outcome == "win"
    assert comparison.sequential.p_value < results.config["alpha"]
    assert power.time_to_decision == "decided"
    data = results.to_dict()
    assert data["outcome"] == "win" and data["comparisons"][0]["significant"] is True


def test_an_undecided_arm_says_when_and_is_not_significant():
    rows, _ = simulate(np.random.default_rng(3), {11: 5000, 12: 5000}, {})
    results = analyse(INFO, ARMS, rows)
    comparison, power = results.comparisons[0], results.power[0]
    assert not comparison.significant and comparison.outcome == "not_enough_data"
    assert results.outcome == "not_enough_data"
    assert power.days_to_decision > 1 and power.time_to_decision == f"about {power.days_to_decision} days"
    assert results.verdict.startswith(f"not enough data yet: about {power.days_to_decision} more days")
    slow, _ = simulate(np.random.default_rng(3), {11: 2000, 12: 2000}, {})
    power = analyse(INFO, ARMS, slow).power[0]
    assert power.days_to_decision is None and power.time_to_decision == "more than a year"


def test_the_list_summary_says_what_the_page_says(winner):
    rows, _, results = winner
    summary = summarise(INFO, ARMS, rows.daily)
    assert (summary.users, summary.verdict, summary.outcome) == (8000, results.verdict, results.outcome)
    srm_rows, _ = simulate(np.random.default_rng(4), {11: 1500, 12: 1200}, {})
    page, line = analyse(INFO, ARMS, srm_rows), summarise(INFO, ARMS, srm_rows.daily)
    assert line.outcome == page.outcome == "srm" and line.verdict == page.verdict
    empty = summarise(INFO, ARMS, [])
    assert (empty.users, empty.verdict, empty.outcome) == (0, "no data yet", "no_data")


def test_no_control_arm():
    treatments = [ArmSpec(12, "b", "B", 50.0, False)]
    with pytest.raises(ValueError, match="experiment 7 has no control variant"):
        analyse(INFO, treatments, AggregateRows((), ()))
    line = summarise(INFO, treatments, [])
    assert (line.verdict, line.outcome) == ("experiment 7 has no control variant", "cannot_compare")


def test_csv_rows_come_from_the_result_type(winner):
    rows = winner[2].to_rows()
    assert rows[0] == VariantRow.csv_header() and rows[0][:3] == ["key", "name", "is_control"]
    control = dict(zip(rows[0], rows[1], strict=True))
    assert control["key"] == "a" and control["lift"] == "" and control["users"] == 4000


def test_the_core_imports_no_django():
    modules = [p.stem for p in (ROOT / "experiments" / "stats").glob("*.py") if p.stem != "__init__"]
    code = ("import sys\n" + "".join(f"import experiments.stats.{m}\n" for m in modules)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", ["experiments/analysis.py", "experiments/dashboard/views.py",
                                  "experiments/dashboard/formatting.py"])
def test_the_django_shell_does_no_statistics(path):
    tree = ast.parse((ROOT / path).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module}
    assert not imported & {"numpy", "scipy", "statsmodels"}
