"""The metric plan in the admin: validated against the metric registry field by field, filled by the power planner,
locked once started; and plan.py's plan of the stored fields."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from experiments.models import Experiment
from experiments.plan import PlanError, experiment_plan, experiment_plan_set, plan_of, planned_users_from_power
from experiments.services import ExperimentLockedError, experiment_start
from tests.experiments.serving_fixtures import build_world

CHANGELIST = "/admin/experiments/experiment/"


@pytest.fixture
def world(db):
    return build_world(start_experiment=False)


def _post(world, **plan) -> dict:
    data = {"name": "planned", "kind": "ab", "hypothesis": "h", "placement": "track_page", "traffic_fraction": "1.0",
            "salt": "abc",
            "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "1000",
            "variants-0-key": "control", "variants-0-embedding_model": world.baseline.pk, "variants-0-weight": "50",
            "variants-0-is_control": "on",
            "variants-1-key": "treatment", "variants-1-embedding_model": world.treatment.pk, "variants-1-weight": "50"}
    data.update(plan)
    return data


def test_default_plan_and_bad_plans_get_clear_errors(admin_client, world):
    response = admin_client.post(CHANGELIST + "add/", _post(world, winsor_percentile="99.9"))
    assert response.status_code == 302, response.content.decode()[:1500]
    experiment = Experiment.objects.get(name="planned")
    plan = experiment_plan(experiment)
    assert plan.primary == "ctr" and plan.secondary == ("stream_rate",)
    assert [(g.metric, g.margin) for g in plan.guardrails] == [("skip_rate", 0.05), ("seconds_per_click", 0.05)]
    assert plan.planned_users is None and plan.winsor_percentile == 99.9
    url = f"{CHANGELIST}{experiment.pk}/change/"
    for fields, message in [
        ({"guardrails": '[{"metric": "bounce_rate", "margin": 0.05}]'}, "unknown metric &#x27;bounce_rate&#x27;"),
        ({"guardrails": '[{"metric": "skip_rate", "margin": 1.5}]'}, "the margin is a relative lift in [0, 1)"),
        ({"secondary_metrics": '"stream_rate"'}, "a JSON list of metric keys"),
        ({"primary_metric": "revenue"}, "unknown metric &#x27;revenue&#x27;"),
        ({"secondary_metrics": '["skip_rate"]'}, "a metric can have one role only"),
        ({"winsor_percentile": "20"}, "a percentile in [50, 100]"),
        ({"plan_baseline_rate": "0.1"}, "the power planner needs both"),
    ]:
        response = admin_client.post(url, _post(world, **fields))
        assert response.status_code == 200  # the form again, with the reason
        page = str(response.context["adminform"].form.errors)
        assert message in page, (fields, page)
    experiment.refresh_from_db()
    assert experiment.primary_metric == "ctr" and experiment.guardrails[0]["metric"] == "skip_rate"


def test_power_planner_fills_the_planned_size_and_the_plan_locks(admin_client, world):
    response = admin_client.post(CHANGELIST + "add/", _post(world, plan_baseline_rate="0.1", plan_mde="0.1",
                                                           guardrails='[{"metric": "skip_rate", "margin": 0.02}]'))
    assert response.status_code == 302, response.content.decode()[:1500]
    experiment = Experiment.objects.get(name="planned")
    assert experiment.planned_users_per_arm == planned_users_from_power(0.1, 0.1) > 1400
    assert experiment_plan(experiment).planned_users == 2 * experiment.planned_users_per_arm
    experiment_start(experiment=experiment)
    url = f"{CHANGELIST}{experiment.pk}/change/"
    response = admin_client.get(url)
    assert "guardrails" not in response.context["adminform"].form.fields  # read-only
    assert "skip_rate" in response.content.decode()  # but shown
    admin_client.post(url, _post(world, guardrails="[]", primary_metric="skip_rate"))
    experiment.refresh_from_db()
    assert experiment.guardrails == [{"metric": "skip_rate", "margin": 0.02}] and experiment.primary_metric == "ctr"


def test_plan_of_names_the_wrong_field():
    with pytest.raises(PlanError) as error:
        plan_of(primary_metric="ctr", secondary_metrics=["nope"], guardrails="x", planned_users_per_arm=None,
                winsor_percentile=99.9)
    assert set(error.value.errors) == {"secondary_metrics", "guardrails"}
    assert plan_of(primary_metric="ctr", secondary_metrics=[], guardrails=[], planned_users_per_arm=100,
                   winsor_percentile=None, arms=3).planned_users == 300


def test_create_experiment_command_sets_the_plan_and_refuses_a_bad_one(world):
    call_command("create_experiment", "--name", "cli-plan", "--variant", "control=baseline", "--variant",
                 "treatment=crossmusim", "--primary-metric", "stream_rate", "--secondary", "",
                 "--guardrail", "skip_rate:0.1", "--planned-users-per-arm", "5000", "--winsor-percentile", "off",
                 stdout=io.StringIO())
    plan = experiment_plan(Experiment.objects.get(name="cli-plan"))
    assert (plan.primary, plan.secondary, plan.planned_users, plan.winsor_percentile) == ("stream_rate", (), 10000,
                                                                                          None)
    assert [(g.metric, g.margin) for g in plan.guardrails] == [("skip_rate", 0.1)]
    with pytest.raises(CommandError, match="unknown metric 'likes'"):
        call_command("create_experiment", "--name", "cli-bad", "--variant", "control=baseline", "--variant",
                     "treatment=crossmusim", "--guardrail", "likes:0.05", stdout=io.StringIO())
    assert not Experiment.objects.filter(name="cli-bad").exists()  # nothing half-made
    started = experiment_start(experiment=Experiment.objects.get(name="cli-plan"))
    with pytest.raises(ExperimentLockedError):
        experiment_plan_set(experiment=started, primary_metric="ctr")
