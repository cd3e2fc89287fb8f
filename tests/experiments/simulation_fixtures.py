"""A tiny labelled catalog with two arms for the simulator's round trips.

The two embedding models mimic the A/B story at toy scale: the "timbre" model's neighbours
share the seed's ensemble, the "style" model's neighbours share its style.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from contextlib import contextmanager

import numpy as np

from recommender.models import EmbeddingModel, Track

STYLES = ("reel", "jig", "waltz", "chorale")
ENSEMBLES = ("fiddle", "piano", "flute+guitar")


def label_catalog(count: int = 48, prefix: str = "sim") -> list[Track]:
    """``count`` Track rows (no audio) with style, ensemble and tempo labels."""
    return Track.objects.bulk_create(
        Track(
            title=f"{prefix} tune {i}", artist=f"composer {i % 5}", album="simulated", duration_s=20.0,
            sample_rate=16000, checksum=hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest(), audio_path="none",
            labels={"style": STYLES[i % len(STYLES)], "ensemble": ENSEMBLES[(i // len(STYLES)) % len(ENSEMBLES)],
                    "tempo_bpm": 80 + 7 * (i % 11)},
        )
        for i in range(count)
    )


def arm_models(tracks: list[Track], dim: int = 16, seed: int = 0) -> tuple[EmbeddingModel, EmbeddingModel]:
    """(timbre-led baseline, style-led crossmusim) models, indexed over ``tracks``."""
    from recommender.services.embeddings import embedding_model_register, track_embeddings_write

    rng = np.random.default_rng(seed)
    style_dirs = rng.normal(size=(len(STYLES), dim))
    ensemble_dirs = rng.normal(size=(len(ENSEMBLES), dim))
    style = np.array([style_dirs[STYLES.index(t.labels["style"])] for t in tracks])
    ensemble = np.array([ensemble_dirs[ENSEMBLES.index(t.labels["ensemble"])] for t in tracks])
    noise = 0.3 * rng.normal(size=(len(tracks), dim))
    ids = [t.pk for t in tracks]
    timbre_model = embedding_model_register(name="sim-timbre", kind=EmbeddingModel.Kind.BASELINE, dim=dim)
    track_embeddings_write(model=timbre_model, track_ids=ids, vectors=3 * ensemble + style + noise)
    style_model = embedding_model_register(name="sim-style", kind=EmbeddingModel.Kind.CROSSMUSIM, dim=dim)
    track_embeddings_write(model=style_model, track_ids=ids, vectors=3 * style + ensemble + noise)
    return timbre_model, style_model


def running_experiment(name: str, control: EmbeddingModel, treatment: EmbeddingModel):
    """A started two-arm experiment through the serving services (control = ``control``)."""
    from experiments.services import VariantSpec, experiment_create, experiment_start

    experiment = experiment_create(name=name, variants=[
        VariantSpec(key="control", embedding_model_id=control.pk, is_control=True),
        VariantSpec(key="treatment", embedding_model_id=treatment.pk),
    ])
    return experiment_start(experiment=experiment)


def wait_for_aggregates(experiment, impressions: int, clicks: int, plays: int = 0,
                        timeout: float = 40.0) -> dict[str, dict]:
    """Poll ``UserAggregate`` until the worker has landed the expected totals; per-variant sums."""
    from django.db.models import Count, Sum

    from experiments.models import UserAggregate

    deadline = time.monotonic() + timeout
    while True:
        rows = (UserAggregate.objects.filter(experiment=experiment).values("variant__key")
                .annotate(users=Count("id"), impressions=Sum("impressions"), clicks=Sum("clicks"), plays=Sum("plays"),
                          long_listens=Sum("long_listens"), listened_seconds=Sum("listened_seconds")))
        by_variant = {row["variant__key"]: row for row in rows}
        landed = tuple(sum(r[name] for r in by_variant.values()) for name in ("impressions", "clicks", "plays"))
        if landed == (impressions, clicks, plays) or time.monotonic() > deadline:
            return by_variant
        time.sleep(0.3)


@contextmanager
def relaying_worker():
    """A real Celery worker on a private queue that is also the events queue, so its outbox relay runs
    (the shared ``celery_worker_process`` consumes a private queue with no relay: events would never land)."""
    from django.conf import settings

    from abplatform.celery import app
    from tests.conftest import start_celery_worker, stop_worker, wait_for_worker

    queue = f"test-sim-{uuid.uuid4().hex[:8]}"
    process = start_celery_worker(queue, settings.DATABASES["default"]["NAME"],
                                  extra_env={"EXPERIMENTS_EVENTS_QUEUE": queue})
    try:
        wait_for_worker(app, queue)
        yield process
    finally:
        stop_worker(process)
