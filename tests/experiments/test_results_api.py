"""GET /api/v1/experiments/<id>/results: numbers, authentication and errors."""

import numpy as np
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from abplatform.apikeys.authentication import clear_api_key_cache
from abplatform.apikeys.services import api_key_create
from experiments.stats.frequentist import DifferenceType, FrequentistConfig, RatioZTest
from experiments.stats.statistics import RatioStatistic
from tests.experiments.dashboard_fixtures import seed_empty_experiment, seed_experiment

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    return seed_experiment(users=1500)


@pytest.fixture
def staff_client():
    client = APIClient()
    client.force_login(User.objects.create_user("analyst", password="pw-analyst-1", is_staff=True))
    return client


def url(pk):
    return f"/api/v1/experiments/{pk}/results"


def test_results_match_an_independent_computation(seeded, staff_client):
    response = staff_client.get(url(seeded.experiment.pk))
    assert response.status_code == 200
    data = response.json()
    rows = {v["key"]: v for v in data["variants"]}
    for key in ("a", "b"):
        assert rows[key]["users"] == seeded.clicks[key].size
        assert rows[key]["impressions"] == int(seeded.impressions[key].sum())
        assert rows[key]["clicks"] == int(seeded.clicks[key].sum())
        assert rows[key]["ctr"] == pytest.approx(seeded.clicks[key].sum() / seeded.impressions[key].sum(), rel=1e-12)
    expected = RatioZTest(RatioStatistic.from_units(seeded.clicks["a"], seeded.impressions["a"]),
                          RatioStatistic.from_units(seeded.clicks["b"], seeded.impressions["b"])).compute_result()
    assert rows["b"]["lift"] == pytest.approx(expected.effect, rel=1e-9)
    assert rows["b"]["lift_ci_lower"] == pytest.approx(expected.ci_lower, rel=1e-9)
    assert rows["b"]["p_value"] == pytest.approx(expected.p_value, rel=1e-6, abs=1e-12)
    absolute = RatioZTest(RatioStatistic.from_units(seeded.clicks["a"], seeded.impressions["a"]),
                          RatioStatistic.from_units(seeded.clicks["b"], seeded.impressions["b"]),
                          FrequentistConfig(difference_type=DifferenceType.ABSOLUTE)).compute_result()
    assert rows["b"]["absolute_difference"] == pytest.approx(absolute.effect, rel=1e-9)
    assert (rows["b"]["absolute_ci_lower"], rows["b"]["absolute_ci_upper"]) == pytest.approx(
        (absolute.ci_lower, absolute.ci_upper), rel=1e-9)
    comparison = data["comparisons"][0]
    assert comparison["key"] == "b" and comparison["relative"]["effect"] == pytest.approx(expected.effect)
    assert comparison["sequential"]["p_value"] == rows["b"]["always_valid_p_value"]
    # the always-valid p is never below the fixed-horizon one at the last look
    assert rows["b"]["always_valid_p_value"] >= rows["b"]["p_value"] or rows["b"]["always_valid_p_value"] < 0.05
    assert data["srm"]["observed"] == [1500, 1500] and not data["srm"]["flagged"]


def test_charts_data_is_complete(seeded, staff_client):
    data = staff_client.get(url(seeded.experiment.pk)).json()
    assert len(data["series"]["a"]["day"]) == 14
    # the last day's cumulative moments are the per-user totals
    assert data["series"]["b"]["ctr"][-1] == pytest.approx(data["variants"][1]["ctr"], rel=1e-12)
    lift = data["lift_series"]["b"]
    assert set(lift) >= {"lift", "ci_lower", "ci_upper", "cs_lower", "cs_upper", "always_valid_p", "mde"}
    assert all(b <= a + 1e-15 for a, b in zip(lift["always_valid_p"], lift["always_valid_p"][1:], strict=False))
    assert data["positions"]["a"]["position"] == list(range(1, 11))
    hist = data["histogram"]
    assert len(hist["edges"]) == 21 and sum(hist["counts"]["a"]) == 1500
    # per-user CTR histogram, computed here from the arrays
    ctr = seeded.clicks["a"] / seeded.impressions["a"]
    expected = np.bincount(np.minimum((ctr * 20).astype(int), 19), minlength=20)
    assert hist["counts"]["a"] == expected.tolist()
    assert data["verdict"].startswith("CrossMuSim beats Baseline: +")
    # the decision behind the words, for clients (and the dashboard) that must not re-decide it
    assert data["outcome"] == "win" and data["comparisons"][0]["outcome"] == "win"
    assert data["comparisons"][0]["significant"] is True and data["power"][0]["time_to_decision"] == "decided"


def test_api_key_and_permissions(seeded):
    """Results need an analyst key or staff: a player key (it ships inside apps) is authenticated but refused."""
    clear_api_key_cache()
    _, player = api_key_create(name="player")
    _, analyst = api_key_create(name="analyst", scope="analyst")
    client = APIClient()
    assert client.get(url(seeded.experiment.pk)).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {player}")
    refused = client.get(url(seeded.experiment.pk))
    assert refused.status_code == 403 and "analyst" in refused.json()["detail"]
    assert "variants" not in refused.json()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {analyst}")
    assert client.get(url(seeded.experiment.pk)).json()["srm"]["observed"] == [1500, 1500]
    client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert client.get(url(seeded.experiment.pk)).status_code == 401
    user_client = APIClient()
    user_client.force_login(User.objects.create_user("listener", password="pw-listener-1"))
    assert user_client.get(url(seeded.experiment.pk)).status_code == 403


def test_missing_and_empty_experiments(staff_client):
    assert staff_client.get(url(987654)).status_code == 404
    empty = seed_empty_experiment()
    data = staff_client.get(url(empty.pk)).json()
    assert data["verdict"] == "no data yet" and data["outcome"] == "no_data"
    assert data["comparisons"][0]["significant"] is False
    assert data["variants"][1]["lift"] is None and data["variants"][0]["users"] == 0


def test_sample_ratio_mismatch_overrides_the_verdict(staff_client):
    seeded = seed_experiment(name="lost-users", users={"a": 1500, "b": 1200}, seed=4)
    data = staff_client.get(url(seeded.experiment.pk)).json()
    assert data["srm"]["flagged"] and data["srm"]["p_value"] < 0.001
    assert data["verdict"].startswith("do not trust these results: sample ratio mismatch")
    assert data["outcome"] == "srm"


def test_three_arms_are_holm_adjusted(staff_client):
    seeded = seed_experiment(name="three-arms", users={"a": 800, "b": 800, "c": 800}, lifts={"b": 0.3, "c": 0.0},
                             seed=5)
    data = staff_client.get(url(seeded.experiment.pk)).json()
    stats = {k: RatioStatistic.from_units(seeded.clicks[k], seeded.impressions[k]) for k in "abc"}
    raw = [RatioZTest(stats["a"], stats[k]).compute_result().p_value for k in "bc"]
    adjusted = [v["p_value"] for v in data["variants"][1:]]
    # Holm with two comparisons: the smaller p doubles, the larger is max(itself, the first adjusted)
    assert min(adjusted) == pytest.approx(min(1.0, 2 * min(raw)), rel=1e-6)
    assert max(adjusted) == pytest.approx(max(min(1.0, 2 * min(raw)), max(raw)), rel=1e-6)
    assert set(data["lift_series"]) == {"b", "c"} and len(data["power"]) == 2


def test_days_without_a_row_carry_the_cumulative_values_forward(seeded, staff_client):
    from experiments.models import VariantDailyMoments

    rows = VariantDailyMoments.objects.filter(experiment=seeded.experiment, variant=seeded.variants["b"])
    gap = rows.order_by("day")[5]
    before = staff_client.get(url(seeded.experiment.pk)).json()["series"]["b"]
    gap.delete()
    after = staff_client.get(url(seeded.experiment.pk)).json()["series"]["b"]
    assert after["day"] == before["day"]
    assert after["users"][5] == before["users"][4] and after["ctr"][5] == before["ctr"][4]
    assert after["ctr"][6:] == before["ctr"][6:]


def test_a_running_experiment_without_traffic_runs_its_series_to_today(seeded, staff_client):
    from experiments.models import VariantDailyMoments

    before = staff_client.get(url(seeded.experiment.pk)).json()
    last_days = sorted({d for d in VariantDailyMoments.objects.filter(experiment=seeded.experiment)
                        .values_list("day", flat=True)})[-3:]
    VariantDailyMoments.objects.filter(experiment=seeded.experiment, day__in=last_days).delete()
    after = staff_client.get(url(seeded.experiment.pk)).json()
    assert after["series"]["a"]["day"] == before["series"]["a"]["day"]  # still up to today
    assert after["series"]["a"]["users"][-3:] == [after["series"]["a"]["users"][-4]] * 3
    assert after["power"][0]["new_users_per_day"] < before["power"][0]["new_users_per_day"]
