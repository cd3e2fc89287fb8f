"""Renditions of the demo catalog's training tracks by other ensembles, as cached musicnn features (issue #27).

    DJANGO_DB_NAME=bench_timbre .venv/bin/python bench/timbre_views.py --renditions 1
    DJANGO_DB_NAME=bench_timbre .venv/bin/python bench/retrieval_quality.py --views rendition ...

A rendition is the same excerpt played again by another ensemble of the training families: the
multi-rendition candidate for symbolic catalogs (the demo catalog can render a work more than once), measured
beside the platform's audio-side timbre views (``recommender.services.timbre_views``, ``--views audio``), which
any catalog of recordings can have. Cached like features (``FeatureCache``, key ``<checksum>-<k>``) under
``var/bench/views/rendition``. The catalog is planned again from its build seed (bit-identical), so renditions
match the database's tracks by file name.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
RENDITIONS_DIR = ROOT / "var" / "bench" / "views" / "rendition"

_STATE: dict = {}


def rendition_cache():
    from recommender.services.embeddings import FeatureCache

    return FeatureCache(RENDITIONS_DIR)


def _init_worker(soundfont: str, musicnn_cache: str) -> None:
    import django
    import torch

    django.setup()  # the cache lives with the platform's feature cache (recommender.services.embeddings)
    from recommender.crossmusim.musicnn import MusicnnExtractor
    from recommender.democatalog.render import Synthesizer

    torch.set_num_threads(1)
    _STATE["synth"] = Synthesizer(soundfont)
    _STATE["extractor"] = MusicnnExtractor(model="MTT_musicnn", cache_dir=musicnn_cache)
    _STATE["cache"] = rendition_cache()


def _render_renditions(task: tuple) -> int:
    """Render and embed one track's renditions; a failure (a silent render) is named and skips that track only."""
    from recommender.democatalog.render import finish

    checksum, jobs = task
    try:
        for k, job in enumerate(jobs):
            features = _STATE["extractor"].patch_features(finish(_STATE["synth"].render(job)))
            _STATE["cache"].save(f"{checksum}-{k}", features)
        return len(jobs)
    except Exception as error:  # noqa: BLE001 - one track's failure must not stop the others
        print(f"{checksum}: {type(error).__name__}: {error}", file=sys.stderr)
        return 0


def training_ensembles(train_families: set[str]) -> list[str]:
    from recommender.democatalog.instruments import ENSEMBLES, families_of

    return sorted(name for name, ensemble in ENSEMBLES.items() if families_of(ensemble.instruments) <= train_families)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="heldout_instruments")
    parser.add_argument("--part", default="train")
    parser.add_argument("--renditions", type=int, default=1)
    parser.add_argument("--size", type=int, default=2000, help="the catalog's build size (its plan is redone)")
    parser.add_argument("--seed", type=int, default=0, help="the catalog's build seed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from tqdm import tqdm

    from recommender.democatalog.build import BuildConfig, BuildReport, select_tracks, track_file
    from recommender.democatalog.instruments import ENSEMBLES, families_of
    from recommender.democatalog.plan import excerpt_start_q, render_job
    from recommender.democatalog.render import find_soundfont
    from recommender.models import DatasetSplit, Track

    part_of = dict(DatasetSplit.objects.filter(name=args.split).values_list("track_id", "part"))
    tracks = [t for t in Track.objects.filter(id__in=part_of) if part_of[t.id] == args.part]
    train_families = set().union(*(families_of(t.labels.get("instruments", [])) for t in
                                   Track.objects.filter(id__in=[i for i, p in part_of.items() if p == "train"])))
    ensembles = training_ensembles(train_families)
    print(f"{len(tracks)} {args.part} tracks of {args.split}; training families {sorted(train_families)}; "
          f"renditions drawn from {len(ensembles)} ensembles: {', '.join(ensembles)}")

    config = BuildConfig(size=args.size, seed=args.seed, progress=False)
    by_file = {track_file(t): t for t in select_tracks(config, BuildReport(out_dir=Path("/tmp")),
                                                       lambda items, **_: items)}
    cache = rendition_cache()
    tasks, missing = [], 0
    for track in tracks:
        file = "/".join(Path(track.audio_path).parts[-2:])
        plan = by_file.get(file)
        if plan is None:
            missing += 1
            continue
        if all(cache.has(f"{track.checksum}-{k}") for k in range(args.renditions)):
            continue
        start_q = excerpt_start_q(plan.work, plan.excerpt, plan.excerpts)
        others = [name for name in ensembles if name != track.labels["ensemble"]]
        tasks.append((track.checksum, [
            render_job("", plan.work, ENSEMBLES[name], plan.seconds_per_q, start_q, config.excerpt_s,
                       random.Random(f"{config.seed}:render:{file}"))
            for name in random.Random(f"rendition:{file}").sample(others, args.renditions)]))
    if missing:
        print(f"{missing} tracks not in the re-planned catalog (another size or seed?)")
    started = time.monotonic()
    context = multiprocessing.get_context("forkserver")
    with context.Pool(args.workers, _init_worker, (find_soundfont(settings.SOUNDFONT), str(settings.MUSICNN_CACHE))) \
            as pool:
        written = sum(tqdm(pool.imap_unordered(_render_renditions, tasks), total=len(tasks), unit="track"))
    print(f"{written} renditions written for {len(tasks)} tracks in {time.monotonic() - started:.0f} s "
          f"({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
