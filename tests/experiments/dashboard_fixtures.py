"""An experiment with aggregate rows written straight into the tables the worker keeps.

Per-user (impressions, clicks) are simulated day by day with numpy (clustered users, as in
stats_fixtures), then written as UserAggregate rows (final per-user sums), VariantDailyMoments
(moments of the cumulative per-user values at the end of each day) and PositionRollup. The
arrays are kept so tests can compute the expected figures independently of the SQL.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection
from django.utils import timezone

from experiments import variant_moments
from experiments.events.ingest import drain_outbox
from experiments.models import (
    EventOutbox,
    Experiment,
    Page,
    PositionRollup,
    UserAggregate,
    Variant,
    VariantDailyMoments,
)
from recommender.models import EmbeddingModel
from tests.experiments.events_fixtures import served_page
from tests.experiments.stats_fixtures import propensities

DAYS = 14


@dataclass
class SeededExperiment:
    experiment: Experiment
    variants: dict[str, Variant]
    clicks: dict[str, np.ndarray]  # final per-user clicks per variant key
    impressions: dict[str, np.ndarray]


def _embedding_model(kind: str) -> EmbeddingModel:
    return EmbeddingModel.objects.get_or_create(name=f"dashboard-test-{kind}", version=1,
                                                defaults={"kind": kind, "dim": 8})[0]


ARM_NAMES = {"a": "Baseline", "b": "CrossMuSim", "c": "CrossMuSim-large"}


def seed_experiment(name: str = "crossmusim-vs-baseline", users: int | dict[str, int] = 2000, lift: float = 0.3,
                    seed: int = 1, days: int = DAYS, lifts: dict[str, float] | None = None) -> SeededExperiment:
    """Arms a (control), b (+lift) by default; ``users``/``lifts`` as dicts choose the arms and their sizes."""
    rng = np.random.default_rng(seed)
    now = timezone.now()
    today = now.date()
    arm_users = users if isinstance(users, dict) else {"a": users, "b": users}
    lifts = lifts or {"b": lift}
    experiment = Experiment.objects.create(name=name, status=Experiment.Status.RUNNING,
                                           hypothesis="Text-trained embeddings recommend tracks users click more")
    Experiment.objects.filter(pk=experiment.pk).update(started_at=now - timedelta(days=days - 0.5))
    experiment.refresh_from_db()
    variants = {key: Variant.objects.create(experiment=experiment, key=key, name=ARM_NAMES[key], is_control=key == "a",
                                            weight=50, embedding_model=_embedding_model(
                                                "baseline" if key == "a" else "crossmusim"))
                for key in arm_users}
    aggregates, moments, positions = [], [], []
    clicks_out, imps_out = {}, {}
    for index, (key, variant) in enumerate(variants.items()):
        users = arm_users[key]
        arrival = rng.integers(0, days, size=users)
        rate = rng.gamma(1.0, 1.0, size=users)
        p = propensities(rng, users, lifts.get(key, 0.0))
        clicks = np.zeros(users, dtype=np.int64)
        imps = np.zeros(users, dtype=np.int64)
        for day in range(days):
            active = arrival <= day
            new = np.where(active, rng.poisson(rate) + (arrival == day), 0)
            imps += new
            clicks += rng.binomial(new, p)
            a = active
            moments.append(VariantDailyMoments(
                experiment=experiment, variant=variant, day=today - timedelta(days=days - 1 - day),
                users=int(a.sum()), sum_impressions=int(imps[a].sum()), sum_clicks=int(clicks[a].sum()),
                sum_impressions_sq=int((imps[a] ** 2).sum()), sum_clicks_sq=int((clicks[a] ** 2).sum()),
                sum_impressions_clicks=int((imps[a] * clicks[a]).sum())))
        for i in range(users):
            first = now - timedelta(days=int(days - arrival[i]))
            aggregates.append(UserAggregate(experiment=experiment, variant=variant,
                                            user_key=(index + 1) * 10**9 + i, impressions=int(imps[i]),
                                            clicks=int(clicks[i]), first_seen=first, last_seen=now))
        # CTR falls with the position; the position totals add up to the arm's totals.
        weights = 1.0 / np.arange(1, 11)
        shares = np.full(10, 0.1)
        pos_imps = np.floor(imps.sum() * shares).astype(int)
        pos_clicks = np.floor(clicks.sum() * weights / weights.sum()).astype(int)
        positions += [PositionRollup(experiment=experiment, variant=variant, position=k + 1,
                                     impressions=int(pos_imps[k]), clicks=int(min(pos_clicks[k], pos_imps[k])))
                      for k in range(10)]
        clicks_out[key], imps_out[key] = clicks, imps
    UserAggregate.objects.bulk_create(aggregates, batch_size=5000)
    VariantDailyMoments.objects.bulk_create(moments)
    PositionRollup.objects.bulk_create(positions)
    variant_moments.rebuild(experiment.pk)  # what the worker would have kept
    return SeededExperiment(experiment, variants, clicks_out, imps_out)


def seed_empty_experiment(name: str = "not-started") -> Experiment:
    experiment = Experiment.objects.create(name=name)
    Variant.objects.create(experiment=experiment, key="a", name="A", is_control=True, weight=50,
                           embedding_model=_embedding_model("baseline"))
    Variant.objects.create(experiment=experiment, key="b", name="B", weight=50,
                           embedding_model=_embedding_model("crossmusim"))
    return experiment


def add_listening(experiment_id: int, seed: float = 0.3) -> None:
    """Plays for every click (some long, some skipped), and a pre-period for ~70 % of the users."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed])
        cursor.execute(f"""
            UPDATE {UserAggregate._meta.db_table} SET plays = clicks,
                   long_listens = floor(clicks * 0.6 + random()), pre_impressions =
                   CASE WHEN random() < 0.7 THEN floor(impressions * (0.5 + random()))::bigint ELSE 0 END
            WHERE experiment_id = %s""", [experiment_id])
        cursor.execute(f"""
            UPDATE {UserAggregate._meta.db_table} SET long_listens = least(long_listens, clicks),
                   pre_clicks = floor(pre_impressions * (0.5 * clicks::float8 / impressions + 0.06)
                                      + random() * (pre_impressions > 0)::int)
            WHERE experiment_id = %s""", [experiment_id])
        cursor.execute(f"""
            UPDATE {UserAggregate._meta.db_table} SET short_plays = plays - long_listens,
                   listened_seconds = long_listens * (30 + random() * 170) + (plays - long_listens) * random() * 29,
                   pre_plays = pre_clicks, pre_long_listens = floor(pre_clicks * 0.6),
                   pre_short_plays = pre_clicks - floor(pre_clicks * 0.6),
                   pre_listened_seconds = floor(pre_clicks * 0.6) * (30 + random() * 170)
            WHERE experiment_id = %s""", [experiment_id])
    variant_moments.rebuild(experiment_id)


def seed_young_experiment(hours: int = 6, name: str = "young") -> tuple[Experiment, datetime]:
    """An experiment started ``hours`` ago with pages and clicks spread over them, landed by the worker's code."""
    experiment = seed_empty_experiment(name=name)
    now = datetime.now(UTC)
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING,
                                                       started_at=now - timedelta(hours=hours))
    rng = np.random.default_rng(5)
    pages, clicks = [], []
    for arm, variant in enumerate(experiment.variants.order_by("id")):
        for u in range(60):
            user_key = (arm + 1) * 10**6 + u
            for _ in range(1 + int(rng.poisson(1.0))):
                at = now - timedelta(minutes=int(rng.integers(1, hours * 60 - 1)))
                request_id = uuid.uuid4()
                common = dict(request_id=request_id, experiment_id=experiment.pk, variant_id=variant.pk,
                              user_key=user_key, user_id=f"user-{user_key}", created_at=at)
                pages.append(served_page(**common, track_ids=[1, 2, 3, 4], scores=[0.5] * 4))
                if rng.random() < 0.4 + 0.2 * arm:
                    clicks.append(EventOutbox(kind=EventOutbox.Kind.CLICK, event_id=uuid.uuid4(), client_time=at,
                                              track_id=2, position=2, **common))
    Page.objects.bulk_create([page for page, _ in pages])
    EventOutbox.objects.bulk_create([row for _, row in pages] + clicks)
    drain_outbox(batch_size=5000)
    deadline = time.monotonic() + 60  # a session worker's relay may be landing some rows too
    while EventOutbox.objects.filter(experiment_id=experiment.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
        drain_outbox(batch_size=5000)

    return Experiment.objects.get(pk=experiment.pk), now
