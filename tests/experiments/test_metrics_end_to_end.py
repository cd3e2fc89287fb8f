"""Listening metrics end to end: clicks and plays posted over HTTP, landed by a real Celery worker through the
outbox, read back from the results API with every metric raw and CUPED and the ship decision."""

from __future__ import annotations

import uuid

import httpx
import pytest
from django.conf import settings

from abplatform.apikeys.services import api_key_create
from experiments.models import Experiment, UserAggregate
from tests.experiments.events_fixtures import outbox_empty, start_events_worker, stop_worker, wait_until
from tests.experiments.serving_fixtures import build_world

USERS = 24


@pytest.mark.django_db(transaction=True)
def test_clicks_and_plays_over_http_reach_the_metrics_and_the_decision(live_server):
    world = build_world(n_tracks=60)
    Experiment.objects.filter(pk=world.experiment.pk).update(planned_users_per_arm=200)
    _, analyst = api_key_create(name="analyst", scope="analyst")
    queue = f"test-metrics-{uuid.uuid4().hex[:8]}"
    worker = start_events_worker(queue, settings.DATABASES["default"]["NAME"])
    try:
        with httpx.Client(base_url=live_server.url, headers=world.headers, timeout=30) as player:
            plays = seconds = 0
            for i in range(USERS):
                body = player.get("/api/v1/recommendations",
                                  params={"user": f"listener{i}", "seed_track": world.tracks[i].pk, "k": 5}).json()
                events = []
                for position in (1, 2) if i % 2 else (1,):
                    click = {"event_id": str(uuid.uuid4()), "type": "click", "request_id": body["request_id"],
                             "track": body["items"][position - 1]["track"], "position": position}
                    listened = 12.0 if i % 3 == 0 else 40.0 + i
                    play = {**click, "event_id": str(uuid.uuid4()), "type": "play", "listened_seconds": listened,
                            "skipped": listened < 30}
                    events += [click, play]
                    plays, seconds = plays + 1, seconds + listened
                answer = player.post("/api/v1/events", json={"events": events})
                assert answer.status_code == 202 and answer.json()["accepted"] == len(events)
            wait_until(lambda: outbox_empty() and sum(UserAggregate.objects.values_list("plays", flat=True)) == plays,
                       60, "the worker to land the plays")
            results = player.get(f"/api/v1/experiments/{world.experiment.pk}/results",
                                 headers={"Authorization": f"Api-Key {analyst}"})
        assert results.status_code == 200, results.text
        data = results.json()
        for key in ("variants", "comparisons", "srm", "verdict", "series", "metrics", "metric_comparisons",
                    "group_sequential", "decisions"):
            assert key in data
        metrics = {m["key"]: m for m in data["metrics"]}
        assert set(metrics) == {"ctr", "stream_rate", "skip_rate", "seconds_per_click"}
        assert metrics["skip_rate"]["role"] == "guardrail" and metrics["skip_rate"]["margin"] == 0.05
        # seconds per click pooled over the arms is the seconds posted over the clicks posted (no cap reached here)
        by_arm = {v["key"]: v["clicks"] for v in data["variants"]}
        pooled = sum(metrics["seconds_per_click"]["values"][k] * by_arm[k] for k in by_arm) / sum(by_arm.values())
        assert pooled == pytest.approx(seconds / plays, rel=0.02)
        comparison = next(c for c in data["metric_comparisons"] if c["metric"] == "seconds_per_click")
        assert {"raw", "cuped", "variance_reduction", "theta", "users_with_pre"} <= set(comparison)
        assert comparison["users_with_pre"] == 0 and comparison["cuped"]["effect"] == comparison["raw"]["effect"]
        decision = data["decisions"][0]
        assert decision["decision"] == "not_enough_data" and decision["test"] == "group_sequential"
        assert "not enough data" in decision["text"]
    finally:
        stop_worker(worker)
