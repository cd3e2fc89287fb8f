"""A young experiment's charts per hour: pages and clicks landed by the worker's code, the hourly cumulative moments
end where the worker's daily moments end, and an older experiment has no hourly series."""

from __future__ import annotations

from datetime import timedelta

import pytest

from experiments.analysis import experiment_results
from experiments.models import Experiment, VariantDailyMoments
from tests.experiments.dashboard_fixtures import seed_young_experiment

pytestmark = pytest.mark.django_db(transaction=True)
HOURS = 6


def test_young_experiment_has_hourly_series_that_end_at_the_daily_totals():
    experiment, now = seed_young_experiment(HOURS)
    data = experiment_results(experiment.pk).to_dict()
    assert set(data["hourly_series"]) == {"a", "b"} and set(data["hourly_lift_series"]) == {"b"}
    for key, variant in ((v.key, v) for v in experiment.variants.all()):
        hourly = data["hourly_series"][key]
        assert len(hourly["hour"]) >= HOURS and hourly["users"] == sorted(hourly["users"])
        last = VariantDailyMoments.objects.filter(variant=variant).order_by("-day").first()
        assert hourly["users"][-1] == last.users
        assert hourly["ctr"][-1] == pytest.approx(last.sum_clicks / last.sum_impressions, rel=1e-12)
        assert data["series"][key]["ctr"][-1] == pytest.approx(hourly["ctr"][-1], rel=1e-12)
    # The lift's interval at the last hour is the daily one (same cumulative per-user moments: same variance).
    lift = data["hourly_lift_series"]["b"]
    assert (lift["ci_lower"][-1], lift["ci_upper"][-1]) == pytest.approx(
        (data["lift_series"]["b"]["ci_lower"][-1], data["lift_series"]["b"]["ci_upper"][-1]), rel=1e-9)
    assert data["hourly_lift_series"]["b"]["hour"][0].startswith(str(data["hourly_series"]["a"]["hour"][0])[:13])

    Experiment.objects.filter(pk=experiment.pk).update(started_at=now - timedelta(days=4))
    assert "hourly_series" not in experiment_results(experiment.pk).to_dict()
