"""Dashboard pages through Django's test client: staff only, list, CSV export, errors."""

import csv
import html
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


def test_the_list_reads_no_per_user_rows_and_agrees_with_the_page(seeded):
    """The list's cost does not grow with users or experiments: a fixed number of queries, none on UserAggregate."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from experiments.models import UserAggregate

    client = login("analyst", staff=True)
    client.get("/experiments/")  # the session and user lookups are cached after this
    with CaptureQueriesContext(connection) as one:
        client.get("/experiments/")
    seed_experiment(name="second", users=300, seed=3)
    seed_empty_experiment()
    with CaptureQueriesContext(connection) as three:
        page = client.get("/experiments/").content.decode()
    assert len(three) == len(one)
    assert not any(UserAggregate._meta.db_table in q["sql"] for q in three.captured_queries)
    verdict = client.get(f"/api/v1/experiments/{seeded.experiment.pk}/results").json()["verdict"]
    assert html.escape(verdict) in page


def test_the_page_styles_the_core_s_decision():
    client = login("analyst", staff=True)
    winner = seed_experiment(users=1500, seed=1)
    page = client.get(f"/experiments/{winner.experiment.pk}/").content.decode()
    assert 'class="verdict win"' in page and ">decided<" in page
    lost = seed_experiment(name="lost-users", users={"a": 1500, "b": 1200}, seed=4)
    assert 'class="verdict warn"' in client.get(f"/experiments/{lost.experiment.pk}/").content.decode()
    empty = seed_empty_experiment()
    assert 'class="verdict wait"' in client.get(f"/experiments/{empty.pk}/").content.decode()


def test_missing_experiment_is_404():
    assert login("analyst", staff=True).get("/experiments/424242/").status_code == 404
