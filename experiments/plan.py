"""An experiment's metric plan: its fields (primary, secondary metrics, guardrails with margins, planned users per
arm, winsorisation percentile) turned into the statistics core's ``ExperimentPlan``, validated field by field
against the metric registry so that the admin can say which field is wrong and why.

``planned_users_from_power``: the admin's "plan from the power planner": the group-sequential maximum users per
arm for a baseline CTR and a relative minimum detectable effect (power.group_sequential_max_users).
"""

from __future__ import annotations

import math
from typing import Any

from experiments.services import ensure_unlocked
from experiments.stats.metric_analysis import ExperimentPlan, Guardrail
from experiments.stats.metrics import METRICS
from experiments.stats.power import group_sequential_max_users

PLAN_FIELDS = ("primary_metric", "secondary_metrics", "guardrails", "planned_users_per_arm", "winsor_percentile")


class PlanError(ValueError):
    """Field name -> message, for the admin form."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _known(key: Any) -> str | None:
    if not isinstance(key, str) or key not in METRICS:
        return f"unknown metric {key!r}; known: {', '.join(METRICS)}"
    return None


def _secondary(value: Any) -> tuple[tuple[str, ...], str | None]:
    if not isinstance(value, list):
        return (), 'a JSON list of metric keys, e.g. ["stream_rate"]'
    for key in value:
        if error := _known(key):
            return (), error
    return tuple(value), None


def _guardrails(value: Any) -> tuple[tuple[Guardrail, ...], str | None]:
    example = 'a JSON list like [{"metric": "skip_rate", "margin": 0.05}]'
    if not isinstance(value, list):
        return (), example
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"metric", "margin"} or "metric" not in item:
            return (), f"{item!r}: each guardrail is {{\"metric\": key, \"margin\": relative lift}}; {example}"
        if error := _known(item["metric"]):
            return (), error
        margin = item.get("margin", 0.05)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
            return (), f"{item['metric']}: the margin is a relative lift in [0, 1), e.g. 0.05 for 5 %, got {margin!r}"
        out.append(Guardrail(item["metric"], float(margin)))
    return tuple(out), None


def plan_of(*, primary_metric: str, secondary_metrics: Any, guardrails: Any, planned_users_per_arm: int | None,
            winsor_percentile: float | None, arms: int = 2) -> ExperimentPlan:
    """The ``ExperimentPlan`` of these field values; a ``PlanError`` naming each wrong field."""
    errors: dict[str, str] = {}
    if error := _known(primary_metric):
        errors["primary_metric"] = error
    secondary, error = _secondary(secondary_metrics)
    if error:
        errors["secondary_metrics"] = error
    rails, error = _guardrails(guardrails)
    if error:
        errors["guardrails"] = error
    if winsor_percentile is not None and not 50 <= winsor_percentile <= 100:
        errors["winsor_percentile"] = "a percentile in [50, 100] (99.9 caps the top 0.1 % of users), or empty"
    if errors:
        raise PlanError(errors)
    keys = [primary_metric, *secondary, *(g.metric for g in rails)]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        field = "guardrails" if any(g.metric in repeated for g in rails) else "secondary_metrics"
        raise PlanError({field: f"{', '.join(repeated)}: a metric can have one role only (primary, secondary or "
                                f"guardrail)"})
    planned = None if planned_users_per_arm is None else float(planned_users_per_arm) * max(arms, 1)
    return ExperimentPlan(primary=primary_metric, secondary=secondary, guardrails=rails, planned_users=planned,
                          winsor_percentile=winsor_percentile)


def experiment_plan(experiment, arms: int = 2) -> ExperimentPlan:
    """The plan of a stored experiment (validated when it was saved; a bad stored plan raises PlanError)."""
    return plan_of(primary_metric=experiment.primary_metric, secondary_metrics=experiment.secondary_metrics,
                   guardrails=experiment.guardrails, planned_users_per_arm=experiment.planned_users_per_arm,
                   winsor_percentile=experiment.winsor_percentile, arms=arms)


def planned_users_from_power(baseline_rate: float, mde: float, impressions_per_user: float = 10.0,
                             alpha: float = 0.05, power: float = 0.8, looks: int = 14) -> int:
    """Users per arm for a group-sequential test of a relative CTR lift ``mde`` at ``looks`` daily looks.

    The relative lift's variance with n users per arm is taken as 2 (1 - p) / (p k n) (k impressions per user,
    clicks binomial): a lower bound when users differ in propensity, so leave a margin or use a pilot's variance.
    """
    if not (0 < baseline_rate < 1 and mde > 0 and impressions_per_user > 0):
        raise ValueError("need a baseline rate in (0, 1), an MDE > 0 and impressions per user > 0")
    n_arm = 1000.0
    variance = 2 * (1 - baseline_rate) / (baseline_rate * impressions_per_user * n_arm)
    total = group_sequential_max_users(variance, 2 * n_arm, mde, alpha=alpha, power=power, looks=looks)
    return int(math.ceil(total / 2))


def experiment_plan_set(*, experiment, **fields: Any):
    """Change a draft experiment's plan fields (names of ``PLAN_FIELDS``): validated as a whole, refused once the
    experiment has started (``services.ExperimentLockedError``), a ``PlanError`` naming each wrong field."""
    unknown = set(fields) - set(PLAN_FIELDS)
    if unknown:
        raise PlanError({name: "not a plan field" for name in sorted(unknown)})
    experiment.refresh_from_db()
    ensure_unlocked(experiment)
    values = {name: fields.get(name, getattr(experiment, name)) for name in PLAN_FIELDS}
    plan_of(**values, arms=max(experiment.variants.count(), 2))
    for name, value in values.items():
        setattr(experiment, name, value)
    experiment.save(update_fields=list(PLAN_FIELDS))
    return experiment
