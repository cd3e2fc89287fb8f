"""The experiment page's metric plan in a real headless Chromium: every metric raw and CUPED, the decision in
words, the group-sequential chart, and a p-value axis that reaches below 1e-4."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from experiments.models import Experiment
from tests.chromium import launch_chromium
from tests.experiments.dashboard_fixtures import add_listening, seed_experiment, seed_young_experiment

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "pw-analyst-metrics-1"


@pytest.fixture
def planned(transactional_db):
    seeded = seed_experiment(users=1500, seed=2, lift=1.0)
    add_listening(seeded.experiment.pk)
    Experiment.objects.filter(pk=seeded.experiment.pk).update(planned_users_per_arm=2000)
    User.objects.create_user("analyst", password=PASSWORD, is_staff=True)
    return seeded.experiment.pk


def test_metrics_decision_and_group_sequential_chart_in_chromium(live_server, planned):
    from playwright.sync_api import sync_playwright

    pk, base, errors = planned, live_server.url, []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/admin/login/?next=/experiments/{pk}/")
            page.fill("#id_username", "analyst")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state("networkidle")
            page.wait_for_function("document.body.dataset.chartsReady === '1'", timeout=30_000)
            data = page.request.get(f"{base}/api/v1/experiments/{pk}/results").json()

            for c in data["metric_comparisons"]:
                row = page.locator(f"#metric-table tr[data-metric='{c['metric']}'][data-variant='{c['key']}']")
                assert row.locator("[data-field='raw']").inner_text() == f"{c['raw']['effect'] * 100:+.1f}%"
                assert row.locator("[data-field='cuped']").inner_text() == f"{c['cuped']['effect'] * 100:+.1f}%"
                assert " to " in row.locator("[data-field='cuped_ci']").inner_text()
            assert page.locator("#metric-table tbody tr").count() == 4
            assert "guardrail (margin 5%)" in page.locator(
                "#metric-table tr[data-metric='skip_rate'] [data-field='role']").inner_text()
            decision = data["decisions"][0]
            box = page.locator(f"#metrics-card [data-decision][data-variant='{decision['key']}']")
            assert decision["text"] in box.inner_text() and "group-sequential test" in box.inner_text()

            gst = page.locator("#chart-gst")
            assert gst.locator("g.trace").count() >= 3  # z path, upper and lower boundary
            assert data["group_sequential"][0]["max_users"] == 4000

            ps = [p for s in data["lift_series"].values() for p in s["p_value"] + s["always_valid_p"]
                  if p is not None and p > 0]
            assert min(ps) < 1e-4  # the seeded lift is strong: the old axis (floor 1e-4) hid it
            low = page.evaluate("document.getElementById('chart-pvalue').layout.yaxis.range[0]")
            assert low <= math.log10(min(ps))
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "experiment-metrics.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors


@pytest.fixture
def young(transactional_db):
    experiment, _ = seed_young_experiment(hours=6, name="young-browser")
    User.objects.create_user("analyst", password=PASSWORD, is_staff=True)
    return experiment.pk


def test_a_young_experiments_charts_are_hourly_in_chromium(live_server, young):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{live_server.url}/admin/login/?next=/experiments/{young}/")
            page.fill("#id_username", "analyst")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state("networkidle")
            page.wait_for_function("document.body.dataset.chartsReady === '1'", timeout=30_000)
            points = page.evaluate("document.getElementById('chart-ctr').data.filter(t => t.mode === "
                                   "'lines+markers').map(t => t.x.length)")
            assert len(points) == 2 and min(points) >= 6  # one per hour, not one dot for day one
            assert page.evaluate("document.getElementById('chart-lift').data.some(t => t.x.length >= 6)")
        finally:
            browser.close()
