"""Dashboard pages through Django's test client: staff only, list, CSV export, errors."""

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.experiments.dashboard_fixtures import seed_empty_experiment, seed_experiment

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    return seed_experiment(users=600, seed=2)


def login(username: str, staff: bool) -> Client:
    client = Client()
    client.force_login(User.objects.create_user(username, password=f"pw-{username}-1", is_staff=staff))
    return client


@pytest.mark.parametrize("path", ["/experiments/", "/experiments/{pk}/", "/experiments/{pk}/variants.csv"])
def test_staff_only(seeded, path):
    path = path.format(pk=seeded.experiment.pk)
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")
    not_staff = login("listener", staff=False).get(path)
    assert not_staff.status_code == 302 and not_staff["Location"].startswith("/admin/login/")
    assert login("analyst", staff=True).get(path).status_code == 200


def test_csv_export_matches_the_json(seeded):
    client = login("analyst", staff=True)
    response = client.get(f"/experiments/{seeded.experiment.pk}/variants.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    data = client.get(f"/api/v1/experiments/{seeded.experiment.pk}/results").json()
    assert [r["key"] for r in rows] == ["a", "b"]
    for row, variant in zip(rows, data["variants"], strict=True):
        assert int(row["users"]) == variant["users"]
        assert int(row["clicks"]) == variant["clicks"]
        assert float(row["ctr"]) == pytest.approx(variant["ctr"], rel=1e-12)
    assert rows[0]["lift"] == "" and float(rows[1]["lift"]) == pytest.approx(data["variants"][1]["lift"])
    assert float(rows[1]["always_valid_p_value"]) == pytest.approx(data["variants"][1]["always_valid_p_value"])


def test_list_shows_every_experiment_with_its_verdict(seeded):
    empty = seed_empty_experiment()
    page = login("analyst", staff=True).get("/experiments/").content.decode()
    assert seeded.experiment.name in page and empty.name in page
    assert "1,200" in page  # users of the seeded experiment
    assert "no data yet" in page


def test_missing_experiment_is_404():
    assert login("analyst", staff=True).get("/experiments/424242/").status_code == 404
