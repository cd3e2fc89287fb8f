"""An interleaving experiment with aggregate rows written straight into the worker's interleaving tables.

Per user and day: pages, first picks of A (a fair coin per page) and credits of each team (each
credited click goes to B with probability ``p_b``). The per-user arrays are kept so tests can compute
the expected figures independently of the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.utils import timezone

from experiments.models import Experiment, InterleavingPositionRollup, InterleavingUserDay, Variant
from tests.experiments.dashboard_fixtures import _embedding_model

K = 10


@dataclass
class SeededInterleaving:
    experiment: Experiment
    credits_a: np.ndarray  # final per-user totals
    credits_b: np.ndarray
    pages: np.ndarray
    a_first: np.ndarray
    days: int


def seed_interleaving(name: str = "crossmusim-interleaved", users: int = 600, p_b: float = 0.58, days: int = 5,
                      seed: int = 3) -> SeededInterleaving:
    rng = np.random.default_rng(seed)
    now = timezone.now()
    today = now.date()
    experiment = Experiment.objects.create(name=name, status=Experiment.Status.RUNNING, kind="interleaving",
                                           hypothesis="Users prefer CrossMuSim's picks")
    Experiment.objects.filter(pk=experiment.pk).update(started_at=now - timedelta(days=days - 0.5))
    experiment.refresh_from_db()
    Variant.objects.create(experiment=experiment, key="baseline", name="Baseline", is_control=True,
                           embedding_model=_embedding_model("baseline"))
    Variant.objects.create(experiment=experiment, key="crossmusim", name="CrossMuSim",
                           embedding_model=_embedding_model("crossmusim"))
    rows = []
    totals = np.zeros((users, 4), dtype=np.int64)  # a, b, pages, a_first
    propensity = rng.beta(1.5, 4.0, size=users)
    arrival = rng.integers(0, days, size=users)
    slots_b = np.zeros(K, dtype=np.int64)
    clicks = np.zeros((K, 2), dtype=np.int64)
    pages_total = 0
    for user in range(users):
        for day in range(arrival[user], days):
            pages = int(rng.poisson(1.5))
            if pages == 0:
                continue
            first = int(rng.binomial(pages, 0.5))
            n_clicks = int(rng.binomial(pages * K, propensity[user] * 0.25))
            b = int(rng.binomial(n_clicks, p_b))
            rows.append(InterleavingUserDay(experiment=experiment, user_key=user + 1,
                                            day=today - timedelta(days=days - 1 - day), pages=pages, a_first=first,
                                            credits_a=n_clicks - b, credits_b=b))
            totals[user] += (n_clicks - b, b, pages, first)
            pages_total += pages
            slots_b += rng.binomial(pages, 0.5, size=K)
            positions = rng.integers(0, K, size=n_clicks)
            np.add.at(clicks, (positions, (np.arange(n_clicks) < b).astype(int)), 1)
    InterleavingUserDay.objects.bulk_create(rows)
    InterleavingPositionRollup.objects.bulk_create(
        InterleavingPositionRollup(experiment=experiment, position=p + 1, pages=pages_total, slots_b=int(slots_b[p]),
                                   clicks_a=int(clicks[p, 0]), clicks_b=int(clicks[p, 1])) for p in range(K))
    return SeededInterleaving(experiment, totals[:, 0], totals[:, 1], totals[:, 2], totals[:, 3], days)
