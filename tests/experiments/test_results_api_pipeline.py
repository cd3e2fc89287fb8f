"""The analysis over aggregates that the real ingest pipeline wrote (C's worker code path, in-process).

Events go into the outbox as the API would write them, ``drain_outbox()`` lands them (the
worker's own code, without the broker), and the results must equal figures computed here
from the raw event list: per-user sums for the delta method, the daily cumulative series,
CTR by position.
"""

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from experiments.analysis import experiment_results
from experiments.events.ingest import drain_outbox
from experiments.models import EventOutbox, Experiment, Impression, Page
from experiments.stats.frequentist import RatioZTest
from experiments.stats.statistics import RatioStatistic
from tests.experiments.dashboard_fixtures import seed_empty_experiment
from tests.experiments.events_fixtures import served_page

pytestmark = pytest.mark.django_db(transaction=True)

DAYS = 5
USERS_PER_ARM = 120


def _events(experiment: Experiment, rng: np.random.Generator):
    """Outbox rows over DAYS days and the per-user truth they imply."""
    variants = {v.key: v for v in experiment.variants.all()}
    start = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=DAYS - 1)
    rows, pages, truth = [], [], {}
    for arm, (key, variant) in enumerate(sorted(variants.items())):
        for u in range(USERS_PER_ARM):
            user_key = (arm + 1) * 10**6 + u
            p = rng.beta(0.5, 4.5) * (1.3 if key == "b" else 1.0)
            first_day = int(rng.integers(0, DAYS))
            for day in range(first_day, DAYS):
                for _ in range(int(rng.poisson(0.8)) + (day == first_day)):
                    request_id = uuid.uuid4()
                    at = start + timedelta(days=day, seconds=int(rng.integers(0, 3600)))
                    page = dict(request_id=request_id, experiment_id=experiment.pk, variant_id=variant.pk,
                                user_key=user_key, user_id=f"user-{user_key}", created_at=at)
                    pages.append(served_page(**page, track_ids=[1, 2, 3, 4, 5], scores=[0.5] * 5))
                    for position in range(1, 6):
                        common = {**page, "track_id": position, "position": position}
                        clicked = rng.random() < min(p, 1.0) / position
                        if clicked:
                            click = {**common, "created_at": at + timedelta(seconds=5)}
                            rows.append(EventOutbox(kind=EventOutbox.Kind.CLICK, event_id=uuid.uuid4(),
                                                    client_time=at, **click))
                        t = truth.setdefault((key, user_key), np.zeros((DAYS, 2), dtype=int))
                        t[day, 0] += 1
                        t[day, 1] += int(clicked)
    return pages, rows, truth


def test_results_from_the_real_ingest_path():
    experiment = seed_empty_experiment(name="pipeline")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING,
                                                       started_at=datetime.now(UTC) - timedelta(days=DAYS))
    pages, rows, truth = _events(experiment, np.random.default_rng(11))
    Page.objects.bulk_create([page for page, _ in pages], batch_size=5000)
    EventOutbox.objects.bulk_create([row for _, row in pages] + rows, batch_size=5000)
    drain_outbox(batch_size=2000)
    # In a full test run a session Celery worker's relay may be landing some of these rows at the same
    # time (idempotently); wait until every row is confirmed, by whichever process.
    deadline = time.monotonic() + 60
    while EventOutbox.objects.filter(experiment_id=experiment.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
        drain_outbox(batch_size=2000)
    assert not EventOutbox.objects.filter(experiment_id=experiment.pk).exists()
    assert Impression.objects.filter(experiment_id=experiment.pk).count() == sum(
        len(page.track_ids) for page, _ in pages)

    results = experiment_results(experiment.pk)
    stats = {}
    for key in ("a", "b"):
        per_user = np.array([t.sum(axis=0) for (k, _), t in truth.items() if k == key])  # (users, [imp, clk])
        stats[key] = RatioStatistic.from_units(per_user[:, 1], per_user[:, 0])
        row = next(v for v in results.variants if v.key == key)
        assert (row.users, row.impressions, row.clicks) == (len(per_user), per_user[:, 0].sum(), per_user[:, 1].sum())
        # the daily series: cumulative per-user moments at the end of each day
        series = results.series[key]
        assert len(series["day"]) == DAYS
        for day in range(DAYS):
            cum = np.array([t[: day + 1].sum(axis=0) for (k, _), t in truth.items()
                            if k == key and t[: day + 1, 0].sum()])  # users seen by the end of the day
            expected = RatioStatistic.from_units(cum[:, 1], cum[:, 0])
            assert series["users"][day] == len(cum)
            assert series["ctr"][day] == pytest.approx(expected.ratio, rel=1e-12)
            low = series["ctr_lower"][day]
            assert expected.ratio - low == pytest.approx(1.959963984540054 * np.sqrt(expected.variance), rel=1e-9)
        # CTR by position: 5 positions, impressions split evenly
        assert results.positions[key]["position"] == [1, 2, 3, 4, 5]
        assert sum(results.positions[key]["clicks"]) == row.clicks
    expected = RatioZTest(stats["a"], stats["b"]).compute_result()
    treatment = next(v for v in results.variants if v.key == "b")
    assert treatment.lift == pytest.approx(expected.effect, rel=1e-12)
    assert treatment.p_value == pytest.approx(expected.p_value, rel=1e-9)
    assert results.srm.observed == [USERS_PER_ARM, USERS_PER_ARM]
