"""Interleaving against A/B on one simulated population: A/A false positives, users for 80 % power, sign agreement.

    .venv/bin/python bench/interleaving_power.py                  # the tables of docs/interleaving.md
    .venv/bin/python bench/interleaving_power.py --tracks 800 --aa-experiments 4000 --variance-users 50000
    .venv/bin/python bench/interleaving_power.py --models baseline,crossmusim   # a platform's catalog and models

``experiments.simulation.monte_carlo`` plays whole experiments in numpy with the simulator's click
model (``taste.TasteModel`` defaults) over a synthetic catalog and the reference rankers
(``monte_carlo.reference_rankers``), no database; or, with ``--models`` (ids, arms or names), over
the platform's own catalog labels and those models' top-10 lists of every track, read once through
the one KNN (the database of the settings, e.g. a ``make run`` platform). Prints every figure with
the date.

1. A/A (CrossMuSim on both teams): the share of experiments each test calls significant at 5 %.
2. Per pair: the true A/B CTR lift and the true share of B credits (one population shown both
   rankers, expected clicks), the per-user variances measured on ``--variance-users`` users, the
   users for 80 % power of each test (two-sided 5 %), their ratio; then ``--power-experiments``
   simulated interleaving experiments at that size (is the power really ~80 %?) and as many A/B
   tests of the same size.
3. Every pair: does the interleaving preference have the sign of the A/B difference?
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.simulation.monte_carlo import (  # noqa: E402
    ab_experiments,
    draft_table,
    interleaving_experiments,
    reference_rankers,
    synthetic_world,
    true_effects,
)
from experiments.stats.frequentist import RatioZTest, absolute_difference  # noqa: E402
from experiments.stats.interleaving import (  # noqa: E402
    first_pick_balance,
    position_balance,
    preference_test,
    sequential_share_test,
    share_test,
    users_for_power,
)

PAIRS = [("baseline", "crossmusim"), ("noisy_text", "crossmusim"), ("label_free", "crossmusim"),
         ("crossmusim_seed2", "crossmusim")]


def platform_world(refs: list[str], k: int = 10):
    """The platform's catalog as a world, and each model's top-k list of every track (track indices)."""
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
    import django

    django.setup()
    from experiments.services import resolve_embedding_model
    from experiments.simulation.monte_carlo import world_from_labels
    from recommender.models import Track
    from recommender.vector_search import VectorSpace, nearest_to_track

    tracks = list(Track.objects.order_by("id").values_list("id", "labels"))
    index = {track_id: i for i, (track_id, _) in enumerate(tracks)}
    world = world_from_labels([labels for _, labels in tracks])
    lists = {}
    for ref in refs:
        space = VectorSpace.of(resolve_embedding_model(ref))
        rows = [[index[n.track_id] for n in nearest_to_track(space, track_id, k)] for track_id, _ in tracks]
        short = sum(len(r) < k for r in rows)
        if short:
            raise SystemExit(f"{space.label}: {short} tracks have fewer than {k} neighbours (not indexed?)")
        lists[ref] = np.array(rows, dtype=np.int64)
        print(f"  {ref}: {space.label}, {len(rows):,} lists of {k}", flush=True)
    return world, lists


def aa(world, rankers, experiments: int, users: int, rng, model: str = "crossmusim") -> None:
    table = draft_table(rankers[model], rankers[model])
    p = {"share (delta method)": [], "preference (t-test)": [], "always-valid share": [], "first pick": [],
         "position balance": []}
    chunk = 250
    for _ in range(0, experiments, chunk):
        run = interleaving_experiments(world, table, users, chunk, rng)
        s = run.statistic
        p["share (delta method)"].append(share_test(s).p_value)
        p["preference (t-test)"].append(preference_test(s).p_value)
        p["always-valid share"].append(sequential_share_test(s).p_value)
        p["first pick"].append([first_pick_balance(s.pages[i], s.a_first[i]).p_value for i in range(chunk)])
        p["position balance"].append([position_balance(run.pages[i] - run.slots_b[i], run.slots_b[i],
                                                       run.clicks_a[i], run.clicks_b[i]).p_value
                                      for i in range(chunk)])
    n = len(p["first pick"]) * chunk
    print(f"\nA/A, {n:,} experiments x {users} users ({model} on both teams), alpha = 0.05")
    print("| test | false-positive rate |\n|---|---|")
    for name, values in p.items():
        rate = float(np.mean(np.concatenate(values) < 0.05))
        print(f"| {name} | {rate:.1%} (±{1.96 * np.sqrt(rate * (1 - rate) / n):.1%}) |")


def sensitivity(world, rankers, pairs, variance_users: int, power_experiments: int, rng) -> None:
    print(f"\nUsers for 80 % power (two-sided 5 %), per-user variances from {variance_users:,} users, true effects "
          "from 3,000 users shown both rankers")
    print("| pair (A vs B) | true A/B CTR lift | true share of B credits | A/B users | interleaving users | ratio "
          "| simulated power at the interleaving size: interleaving / A/B |\n|---|---|---|---|---|---|---|")
    for a, b in pairs:
        table = draft_table(rankers[a], rankers[b])
        truth = true_effects(world, rankers[a], rankers[b], table, 3_000, rng)
        control, treatment = ab_experiments(world, rankers[a], rankers[b], variance_users, 1, rng)
        _, variance = absolute_difference(control, treatment)
        n_ab = users_for_power(float(variance[0]) * float(control.n[0] + treatment.n[0]), truth.ctr_b - truth.ctr_a)
        credits = interleaving_experiments(world, table, variance_users, 1, rng).statistic.credits
        n_il = users_for_power(float(credits.variance[0] * credits.n[0]), truth.share_b - 0.5)
        powers = "—"
        if n_il <= 5_000:
            users = int(np.ceil(n_il))
            run = interleaving_experiments(world, table, users, power_experiments, rng)
            il_power = float(np.mean(share_test(run.statistic).p_value < 0.05))
            c, t = ab_experiments(world, rankers[a], rankers[b], users, power_experiments, rng)
            with np.errstate(all="ignore"):
                ab_power = float(np.mean(RatioZTest(c, t).compute_result().p_value < 0.05))
            powers = f"{il_power:.0%} / {ab_power:.0%} ({power_experiments} experiments of {users:,} users)"
        print(f"| {a} vs {b} | {truth.lift:+.1%} | {truth.share_b:.3f} | {n_ab:,.0f} | {n_il:,.0f} | "
              f"{n_ab / n_il:.1f} | {powers} |", flush=True)


def agreement(world, rankers, rng) -> None:
    print("\nSign agreement, every pair (true effects, 3,000 users shown both rankers)")
    print("| A vs B | true A/B CTR lift | true share of B credits | same sign |\n|---|---|---|---|")
    for a, b in itertools.combinations(rankers, 2):
        truth = true_effects(world, rankers[a], rankers[b], draft_table(rankers[a], rankers[b]), 3_000, rng)
        same = np.sign(truth.share_b - 0.5) == np.sign(truth.lift)
        note = "yes" if same else ("no (|lift| < 2 %)" if abs(truth.lift) < 0.02 else "**no**")
        print(f"| {a} vs {b} | {truth.lift:+.1%} | {truth.share_b:.3f} | {note} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=400)
    parser.add_argument("--aa-experiments", type=int, default=2000)
    parser.add_argument("--aa-users", type=int, default=400)
    parser.add_argument("--variance-users", type=int, default=50_000)
    parser.add_argument("--power-experiments", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="", help="comma list of the platform's models (ids, arms or names): "
                                                      "use its catalog and their neighbour lists")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.models:
        refs = [r.strip() for r in args.models.split(",") if r.strip()]
        if len(refs) < 2:
            parser.error("--models needs at least two models")
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; the platform's catalog and models, k = 10, TasteModel "
              "defaults")
        world, rankers = platform_world(refs)
        pairs, aa_model = list(itertools.combinations(refs, 2)), refs[-1]
    else:
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; synthetic catalog of {args.tracks} tracks (16 styles, 10 "
              "ensembles), k = 10, TasteModel defaults")
        world = synthetic_world(n_tracks=args.tracks, seed=args.seed)
        rankers, pairs, aa_model = reference_rankers(world), PAIRS, "crossmusim"
    print(f"  {world.n_tracks:,} tracks, {world.n_styles} styles, {world.n_ensembles} ensembles")
    rng = np.random.default_rng(args.seed + 1)
    aa(world, rankers, args.aa_experiments, args.aa_users, rng, aa_model)
    sensitivity(world, rankers, pairs, args.variance_users, args.power_experiments, rng)
    agreement(world, rankers, rng)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
