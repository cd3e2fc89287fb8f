"""Staff-only HTML pages: the experiments list, one experiment's results, and its CSV export.

Thin: every figure and every decision (verdict, outcome, significance, SRM flag, time to
decision) comes from ``experiments.analysis`` / the statistics core; this module only formats.
The page embeds the same JSON the API serves and plotly.js (served from our static files)
draws the charts from it.
"""

from __future__ import annotations

import csv

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render

from experiments.analysis import experiment_results, experiment_summaries
from experiments.dashboard import formatting as fmt
from experiments.models import Experiment
from experiments.selectors import placement_layers
from experiments.stats.interleaving_report import InterleavingResults
from experiments.stats.results import ExperimentResults
from experiments.stats.srm import SRM_P_THRESHOLD
from experiments.stats.verdict import Outcome

# The verdict box's style (a CSS class of base.html) per outcome; any other outcome: "wait".
VERDICT_STYLE = {Outcome.SRM: "warn", Outcome.WIN: "win", Outcome.LOSS: "lose"}


def _results_or_404(pk: int) -> ExperimentResults | InterleavingResults:
    experiment = get_object_or_404(Experiment, pk=pk)
    try:
        return experiment_results(experiment)
    except ValueError as error:  # e.g. no control variant: a reason, not a 500
        raise Http404(str(error)) from error


def _variant_cells(results: ExperimentResults) -> list[dict]:
    rows = []
    for v in results.variants:
        rows.append({
            "key": v.key, "name": v.name, "is_control": v.is_control,
            "users": fmt.count(v.users), "impressions": fmt.count(v.impressions), "clicks": fmt.count(v.clicks),
            "ctr": fmt.ctr(v.ctr), "ctr_ci": fmt.interval(v.ctr_ci_lower, v.ctr_ci_upper, fmt.ctr),
            "lift": "control" if v.is_control else fmt.lift(v.lift),
            "lift_ci": "" if v.is_control else fmt.interval(v.lift_ci_lower, v.lift_ci_upper),
            "difference": "" if v.is_control else fmt.points(v.absolute_difference),
            "difference_ci": "" if v.is_control else fmt.interval(v.absolute_ci_lower, v.absolute_ci_upper,
                                                                  fmt.points),
            "p_value": "" if v.is_control else fmt.p_value(v.p_value),
            "always_valid_p_value": "" if v.is_control else fmt.p_value(v.always_valid_p_value),
            "always_valid_ci": "" if v.is_control else fmt.interval(v.always_valid_ci_lower, v.always_valid_ci_upper),
            "naive_p_value": "" if v.is_control else fmt.p_value(v.naive_p_value),
            "chance_to_win": "" if v.is_control else fmt.probability(v.chance_to_win),
            "error": v.error or "",
        })
    return rows


def _power_cells(results: ExperimentResults) -> list[dict]:
    return [{"key": p.key, "mde": fmt.lift(p.mde).lstrip("+"), "mde_sequential": fmt.lift(p.mde_sequential).lstrip("+"),
             "power_at_target": fmt.probability(p.power_at_target), "target": fmt.lift(p.target_effect).lstrip("+"),
             "days": p.time_to_decision,
             "new_users_per_day": fmt.count(round(p.new_users_per_day))}
            for p in results.power]


ROLE_ORDER = {"success": 0, "guardrail": 1, "secondary": 2}
DECISION_STYLE = {"ship": "win", "worse": "lose", "guardrail": "warn"}  # any other decision: "wait"


def _metric_value(spec_key: str, value) -> str:
    """Rates in percent; listened seconds per click in seconds."""
    if value is None:
        return "—"
    return f"{value:.1f} s" if spec_key == "seconds_per_click" else fmt.ctr(value)


def _metric_cells(results: ExperimentResults) -> list[dict]:
    """One row per metric and treatment: raw and CUPED lift with intervals, in the plan's order of roles."""
    if not results.metrics:
        return []
    control = next(v.key for v in results.variants if v.is_control)
    by_metric = {m.key: m for m in results.metrics}
    rows = []
    for c in sorted(results.metric_comparisons, key=lambda c: ROLE_ORDER.get(by_metric[c.metric].role, 3)):
        m = by_metric[c.metric]
        role = m.role + (f" (margin {m.margin:.0%})" if m.role == "guardrail" else "")
        capped = ("off" if m.winsor_percentile is None else
                  f"p{m.winsor_percentile:g}: {m.users_capped:,} users capped"
                  + ("" if m.cap is None else f" at {m.cap:,.4g}"))
        rows.append({"metric": m.key, "label": m.label, "role": role, "key": c.key,
                     "direction": "lower is better" if m.direction == "lower_is_better" else "higher is better",
                     "control": _metric_value(m.key, m.values.get(control)),
                     "treatment": _metric_value(m.key, m.values.get(c.key)),
                     "raw": fmt.lift(c.raw.effect), "raw_ci": fmt.interval(c.raw.ci_lower, c.raw.ci_upper),
                     "raw_p": fmt.p_value(c.raw.p_value),
                     "cuped": fmt.lift(c.cuped.effect), "cuped_ci": fmt.interval(c.cuped.ci_lower, c.cuped.ci_upper),
                     "cuped_p": fmt.p_value(c.cuped.p_value),
                     "variance_reduction": fmt.probability(c.variance_reduction),
                     "users_with_pre": fmt.count(c.users_with_pre), "capped": capped})
    return rows


def _decision_cells(results: ExperimentResults) -> list[dict]:
    return [{"key": d.key, "decision": d.decision, "text": d.text, "style": DECISION_STYLE.get(d.decision, "wait"),
             "test": "group-sequential test (planned size)" if d.test == "group_sequential"
             else "always-valid test (no planned size)", "blocking": ", ".join(d.blocking)}
            for d in results.decisions or []]


@staff_member_required
def experiment_list(request):
    """Every experiment, grouped by placement: each placement's default, free share and the shares held now."""
    layers = placement_layers()
    share_of = {e: share for layer in layers for e, (_, share) in layer.experiments.items()}
    placement_of = dict(Experiment.objects.values_list("pk", "placement_id"))
    rows: dict[str, list[dict]] = {layer.key: [] for layer in layers}
    for s in experiment_summaries():
        rows.setdefault(placement_of.get(s.experiment_id, ""), []).append({
            "id": s.experiment_id, "name": s.name, "status": s.status,
            "age": "not started" if s.age_days is None else f"{s.age_days:.1f} days", "users": fmt.count(s.users),
            "share": f"{share_of[s.experiment_id]:.2%}" if s.experiment_id in share_of else "",
            "verdict": s.verdict})
    placements = [{"key": layer.key, "default": layer.default_model, "free": f"{layer.free_share:.2%}",
                   "running": len(layer.experiments), "experiments": rows.get(layer.key, [])} for layer in layers]
    return render(request, "experiments/list.html", {"placements": placements,
                                                      "experiments": [r for v in rows.values() for r in v]})


def _interleaving_page(request, results: InterleavingResults):
    total = results.credits_a + results.credits_b
    teams = [{"letter": "AB"[t.team - 1], "key": t.key, "name": t.name, "credits": fmt.count(c),
              "share": fmt.probability(c / total) if total else "—"}
             for t, c in zip(results.teams, (results.credits_a, results.credits_b), strict=True)]
    tests = []
    for key, label, est, show in (
            ("share_b_sequential", "Share of B credits (always-valid; the verdict)", results.share_b_sequential,
             fmt.probability),
            ("share_b", "Share of B credits (fixed horizon)", results.share_b, fmt.probability),
            ("preference", "Preference for B (per user)", results.preference, fmt.lift),
            ("listen_share_b", f"Share of B long listens ({fmt.count(results.listens_b)} of "
                               f"{fmt.count(results.listens_a + results.listens_b)}; shown, not decided on)",
             results.listen_share_b, fmt.probability)):
        tests.append({"key": key, "label": label, "effect": show(est.effect),
                      "interval": fmt.interval(est.ci_lower, est.ci_upper, show), "p_value": fmt.p_value(est.p_value)})
    return render(request, "experiments/interleaving.html", {
        "results": results, "data": results.to_dict(), "teams": teams, "tests": tests,
        "users": fmt.count(results.users), "pages": fmt.count(results.pages),
        "verdict_style": VERDICT_STYLE.get(results.outcome, "wait"),
        "age": "not started" if results.age_days is None else f"{results.age_days:.1f} days",
    })


@staff_member_required
def experiment_detail(request, pk: int):
    results = _results_or_404(pk)
    if isinstance(results, InterleavingResults):
        return _interleaving_page(request, results)
    srm = results.srm
    return render(request, "experiments/detail.html", {
        "results": results, "data": results.to_dict(), "variants": _variant_cells(results),
        "power": _power_cells(results), "verdict_style": VERDICT_STYLE.get(results.outcome, "wait"),
        "srm": {"flagged": srm.flagged, "message": srm.message, "p_value": fmt.p_value(srm.p_value),
                "threshold": fmt.p_value(SRM_P_THRESHOLD),
                "observed": ", ".join(fmt.count(x) for x in srm.observed),
                "expected": ", ".join(fmt.count(round(x)) for x in srm.expected)},
        "age": "not started" if results.age_days is None else f"{results.age_days:.1f} days",
        "metrics": _metric_cells(results), "decisions": _decision_cells(results),
    })


@staff_member_required
def experiment_csv(request, pk: int):
    results = _results_or_404(pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = "interleaving" if isinstance(results, InterleavingResults) else "variants"
    response["Content-Disposition"] = f'attachment; filename="experiment-{pk}-{name}.csv"'
    csv.writer(response).writerows(results.to_rows())
    return response
