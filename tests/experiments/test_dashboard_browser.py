"""The experiment page in a real headless Chromium (Debian's, driven by Playwright).

Logs in through the admin login form as staff, opens the list and the experiment page,
checks that every plotly chart has drawn its SVG, that the numbers in the table are the
JSON's, downloads the CSV, and saves screenshots under var/screenshots/.
"""

import csv
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests.chromium import launch_chromium
from tests.experiments.dashboard_fixtures import seed_empty_experiment, seed_experiment

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHARTS = ["chart-ctr", "chart-lift", "chart-pvalue", "chart-mde", "chart-position", "chart-histogram"]
PASSWORD = "pw-analyst-browser-1"


@pytest.fixture
def dashboard_data(transactional_db):
    """Rows the live server must see (committed), written before the browser starts: Playwright's sync
    API runs an event loop in this thread, and Django rightly refuses ORM calls under a running loop."""
    seeded = seed_experiment(users=1500, seed=1)
    seed_empty_experiment()
    User.objects.create_user("analyst", password=PASSWORD, is_staff=True)
    User.objects.create_user("listener", password=PASSWORD)
    return seeded.experiment.pk


@pytest.fixture
def browser(dashboard_data):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def login(page, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")


def pct(x, digits=2):
    return f"{x * 100:.{digits}f}%"


def signed(x):
    return f"{x * 100:+.1f}%"


def p_text(x):
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def test_experiment_page_in_chromium(live_server, dashboard_data, browser):
    pk = dashboard_data
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    errors = []

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(page, base, "analyst", "/experiments/")
    assert page.url.endswith("/experiments/")
    assert page.locator(f"tr[data-experiment='{pk}'] td[data-field='users']").inner_text() == "3,000"
    page.screenshot(path=str(SCREENSHOTS / "experiments-list.png"), full_page=True)

    page.goto(f"{base}/experiments/{pk}/")
    page.wait_for_function("document.body.dataset.chartsReady === '1'", timeout=30_000)
    for chart in CHARTS:
        svg = page.locator(f"#{chart} svg.main-svg")
        assert svg.count() >= 1, f"{chart} has no plotly svg"
        assert page.locator(f"#{chart} g.trace, #{chart} g.barlayer .point").count() >= 1, f"{chart} drew nothing"
    assert not errors, errors

    data = page.request.get(f"{base}/api/v1/experiments/{pk}/results").json()
    assert page.locator("#verdict").inner_text().strip() == data["verdict"]
    assert data["verdict"].startswith("CrossMuSim beats Baseline")
    for variant in data["variants"]:
        row = page.locator(f"#variant-table tr[data-variant='{variant['key']}']")

        def cell(field, row=row):
            return row.locator(f"[data-field='{field}']").inner_text().strip()

        assert cell("users") == f"{variant['users']:,}"
        assert cell("impressions") == f"{variant['impressions']:,}"
        assert cell("clicks") == f"{variant['clicks']:,}"
        assert cell("ctr") == pct(variant["ctr"])
        assert cell("ctr_ci") == f"{pct(variant['ctr_ci_lower'])} to {pct(variant['ctr_ci_upper'])}"
        if not variant["is_control"]:
            assert cell("lift") == signed(variant["lift"])
            assert cell("lift_ci") == f"{signed(variant['lift_ci_lower'])} to {signed(variant['lift_ci_upper'])}"
            assert cell("difference") == f"{variant['absolute_difference'] * 100:+.2f} pp"
            assert cell("difference_ci") == (f"{variant['absolute_ci_lower'] * 100:+.2f} pp to "
                                             f"{variant['absolute_ci_upper'] * 100:+.2f} pp")
            assert cell("p_value") == p_text(variant["p_value"])
            assert cell("always_valid_p_value") == p_text(variant["always_valid_p_value"])
            assert cell("always_valid_ci") == (f"{signed(variant['always_valid_ci_lower'])} to "
                                               f"{signed(variant['always_valid_ci_upper'])}")
            assert cell("naive_p_value") == p_text(variant["naive_p_value"])
    assert page.locator("[data-field='srm_p_value']").inner_text() == p_text(data["srm"]["p_value"])
    power = data["power"][0]
    assert page.locator("#power-card td[data-field='mde']").inner_text() == f"{power['mde'] * 100:.1f}%"
    page.screenshot(path=str(SCREENSHOTS / "experiment-detail.png"), full_page=True)

    csv_response = page.request.get(f"{base}{page.locator('#csv-link').get_attribute('href')}")
    assert csv_response.ok and csv_response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.text())))
    assert [int(r["users"]) for r in rows] == [v["users"] for v in data["variants"]]
    context.close()

    # Not staff: the dashboard sends the user back to the login page.
    context = browser.new_context()
    page = context.new_page()
    login(page, base, "listener", f"/experiments/{pk}/")
    page.goto(f"{base}/experiments/{pk}/")
    assert "/admin/login/" in page.url
    assert page.locator("#chart-ctr").count() == 0
    context.close()
