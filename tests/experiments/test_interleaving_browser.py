"""An interleaving experiment's page in a real headless Chromium (Debian's, driven by Playwright): charts drawn,
numbers equal to the JSON's, the CSV link works; a screenshot under var/screenshots/."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests.chromium import launch_chromium
from tests.experiments.interleaving_fixtures import seed_interleaving

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "pw-interleaving-browser-1"


@pytest.fixture
def seeded_pk(transactional_db):
    """Committed rows written before the browser starts (Playwright's sync API runs an event loop here)."""
    pk = seed_interleaving().experiment.pk
    User.objects.create_user("il-staff", password=PASSWORD, is_staff=True)
    return pk


def test_interleaving_page_in_chromium(live_server, seeded_pk):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/admin/login/?next=/experiments/{seeded_pk}/")
            page.fill("#id_username", "il-staff")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state("networkidle")
            page.wait_for_function("document.body.dataset.chartsReady === '1'", timeout=30_000)
            for chart in ("chart-share", "chart-pvalue", "chart-position"):
                assert page.locator(f"#{chart} svg.main-svg").count() >= 1, f"{chart} has no plotly svg"
                assert page.locator(f"#{chart} g.trace, #{chart} g.barlayer .point").count() >= 1, chart
            assert not errors, errors
            data = page.request.get(f"{base}/api/v1/experiments/{seeded_pk}/results").json()
            assert page.locator("#verdict").inner_text().strip() == data["verdict"]
            assert data["verdict"].startswith("users prefer CrossMuSim's picks")
            credits = page.locator("#team-table tr[data-team='B'] [data-field='credits']").inner_text()
            assert credits == f"{data['credits_b']:,}"
            share = data["share_b_sequential"]
            cell = page.locator("#test-table tr[data-test='share_b_sequential'] [data-field='effect']").inner_text()
            assert cell == f"{share['effect'] * 100:.1f}%"
            assert page.locator("#first-pick").inner_text() == data["first_pick"]["message"]
            page.screenshot(path=str(SCREENSHOTS / "interleaving-detail.png"), full_page=True)
            csv_response = page.request.get(f"{base}{page.locator('#csv-link').get_attribute('href')}")
            assert csv_response.ok and csv_response.text().startswith("team,key,name,credits,share_of_credits")
        finally:
            browser.close()
