"""The moments statement on PostgreSQL equals the per-user arrays' statistics (to 1e-9), and the results carry the
experiment's metric plan."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from abplatform.management.commands.prepare_demo import EXPERIMENT_NAME
from experiments import metric_scan
from experiments.analysis import experiment_results, user_metric_rows
from experiments.metric_scan import metric_moments
from experiments.stats.cuped import CupedRatioTest
from experiments.stats.frequentist import DifferenceType, FrequentistConfig
from experiments.stats.metrics import METRICS, UserColumns, metric_data
from experiments.stats.results import VariantRow
from tests.experiments.dashboard_fixtures import add_listening, seed_experiment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("percentile", "caps_from"), [(99.0, "tail"), (99.0, "sort"), (None, "none")])
def test_database_moments_equal_the_arrays(percentile, caps_from, monkeypatch):
    if caps_from == "tail":  # the sample is every page: the caps come from the upper tail
        monkeypatch.setattr(metric_scan, "SAMPLE_PERCENT", 100.0)
        monkeypatch.setattr(metric_scan, "MIN_SAMPLE", 1)
    seeded = seed_experiment(users=800)
    pk = seeded.experiment.pk
    add_listening(pk)
    arms = {a: UserColumns(**rows.columns()) for a, rows in user_metric_rows(pk).items()}
    got = metric_moments(pk, list(METRICS.values()), percentile)
    config = FrequentistConfig(difference_type=DifferenceType.RELATIVE)
    control, treatment = seeded.variants["a"].pk, seeded.variants["b"].pk
    for key, spec in METRICS.items():
        expected = metric_data(spec, arms, percentile)
        assert got[key].winsorisation.users_capped == expected.winsorisation.users_capped
        if percentile is not None:
            assert got[key].winsorisation.cap == pytest.approx(expected.winsorisation.cap, rel=1e-12)
            assert got[key].pre_winsorisation.cap == pytest.approx(expected.pre_winsorisation.cap, rel=1e-12)
        for arm in (control, treatment):
            np.testing.assert_allclose(got[key].statistics[arm].sums, expected.statistics[arm].sums, rtol=1e-11)
            np.testing.assert_allclose(got[key].statistics[arm].products, expected.statistics[arm].products,
                                       rtol=1e-11)
        a = CupedRatioTest(expected.statistics[control], expected.statistics[treatment], config,
                           spec.statistic_type).compute_result()
        b = CupedRatioTest(got[key].statistics[control], got[key].statistics[treatment], config,
                           spec.statistic_type).compute_result()
        assert abs(a.adjusted.effect - b.adjusted.effect) < 1e-9
        assert abs(a.adjusted.standard_error - b.adjusted.standard_error) < 1e-9
        assert a.variance_reduction > 0.0 or key != "ctr"


def test_results_follow_the_experiment_plan():
    seeded = seed_experiment(users=600)
    experiment = seeded.experiment
    add_listening(experiment.pk)
    data = experiment_results(experiment).to_dict()
    roles = {m["key"]: m["role"] for m in data["metrics"]}
    assert roles == {"ctr": "success", "stream_rate": "secondary", "skip_rate": "guardrail",
                     "seconds_per_click": "guardrail"}
    assert {c["metric"] for c in data["metric_comparisons"]} == set(roles)
    assert data["decisions"][0]["test"] == "always_valid" and data["group_sequential"] == []
    experiment.primary_metric, experiment.secondary_metrics = "stream_rate", []
    experiment.guardrails = [{"metric": "skip_rate", "margin": 0.1}]
    experiment.planned_users_per_arm, experiment.winsor_percentile = 700, None
    experiment.save()
    data = experiment_results(experiment).to_dict()
    assert [(m["key"], m["role"], m["margin"]) for m in data["metrics"]] == [
        ("stream_rate", "success", 0.0), ("skip_rate", "guardrail", 0.1)]
    assert data["metrics"][0]["winsor_percentile"] is None and data["metrics"][0]["cap"] is None
    assert data["decisions"][0]["test"] == "group_sequential"
    gst = data["group_sequential"][0]
    assert gst["max_users"] == 1400 and len(gst["z"]) == len(gst["boundary"]) > 1


def test_csv_keeps_the_variant_columns_and_adds_the_plan():
    seeded = seed_experiment(users=300)
    add_listening(seeded.experiment.pk)
    results = experiment_results(seeded.experiment)
    header, control, treatment = results.to_rows()
    assert header[:len(VariantRow.csv_header())] == VariantRow.csv_header()
    row = dict(zip(header, treatment, strict=True))
    comparison = next(c for c in results.metric_comparisons if c.metric == "skip_rate")
    assert row["skip_rate_cuped_lift"] == comparison.cuped.effect and row["decision"] == results.decisions[0].decision
    assert dict(zip(header, control, strict=True))["skip_rate_lift"] == ""


def test_demo_info_prints_the_demo_experiments_metrics_and_decision():
    seeded = seed_experiment(name=EXPERIMENT_NAME, users=300)
    add_listening(seeded.experiment.pk)
    out = io.StringIO()
    call_command("demo_info", stdout=out)
    text = out.getvalue()
    results = experiment_results(seeded.experiment)
    assert f"decision:  {results.decisions[0].text}" in text
    assert "guardrail  listened seconds per click: a " in text and "b CUPED " in text
