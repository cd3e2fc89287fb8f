"""Renditions of the demo catalog's training tracks by other ensembles, as cached musicnn features (issue #27).

    DJANGO_DB_NAME=bench_timbre .venv/bin/python bench/timbre_views.py --renditions 1
    DJANGO_DB_NAME=bench_timbre .venv/bin/python bench/retrieval_quality.py --views rendition ...

A rendition is the same excerpt played again by another ensemble of the training families: the
multi-rendition candidate for symbolic catalogs (the demo catalog can render a work more than once), measured
beside the platform's audio-side timbre views (``recommender.services.timbre_views``, ``--views audio``), which
any catalog of recordings can have. Cached under ``var/bench/views/rendition/<checksum>-<k>.npy``. The catalog
is planned again from its build seed (bit-identical), so renditions match the database's tracks by file name.
``--audio-views K`` also writes K views of the track's own render through ``audio_augment`` under
``views/audio/`` (the first experiment's; the platform's own views are seeded differently and cached elsewhere).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
VIEWS_DIR = ROOT / "var" / "bench" / "views"

_STATE: dict = {}


def view_path(kind: str, checksum: str, index: int) -> Path:
    return VIEWS_DIR / kind / f"{checksum}-{index}.npy"


def _init_worker(soundfont: str, musicnn_cache: str) -> None:
    import torch

    from recommender.crossmusim.musicnn import MusicnnExtractor
    from recommender.democatalog.render import Synthesizer

    torch.set_num_threads(1)
    _STATE["synth"] = Synthesizer(soundfont)
    _STATE["extractor"] = MusicnnExtractor(model="MTT_musicnn", cache_dir=musicnn_cache)


def _views_of(task: tuple) -> tuple[str, int]:
    try:
        return _compute_views(task)
    except Exception as error:  # one track's failure (a silent render) must not stop the others
        print(f"{task[0]}: {type(error).__name__}: {error}", file=sys.stderr)
        return task[0], 0


def _compute_views(task: tuple) -> tuple[str, int]:
    from recommender.crossmusim.audio_augment import augment_timbre
    from recommender.democatalog.render import SAMPLE_RATE, finish

    checksum, job, audio_views, rendition_jobs = task
    synth, extractor = _STATE["synth"], _STATE["extractor"]
    written = 0
    if audio_views:
        original = finish(synth.render(job))
        for k in range(audio_views):
            rng = np.random.default_rng([int(checksum[:12], 16), k])
            audio = augment_timbre(original, SAMPLE_RATE, rng)
            _save(view_path("audio", checksum, k), extractor.patch_features(audio))
            written += 1
    for k, rendition in enumerate(rendition_jobs):
        audio = finish(synth.render(rendition))
        _save(view_path("rendition", checksum, k), extractor.patch_features(audio))
        written += 1
    return checksum, written


def _save(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
    np.save(temp, features.astype(np.float32))
    os.replace(temp, path)


def training_ensembles(train_families: set[str]) -> list[str]:
    from recommender.democatalog.instruments import ENSEMBLES, families_of

    return sorted(name for name, ensemble in ENSEMBLES.items() if families_of(ensemble.instruments) <= train_families)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="heldout_instruments")
    parser.add_argument("--part", default="train")
    parser.add_argument("--audio-views", type=int, default=0)
    parser.add_argument("--renditions", type=int, default=1)
    parser.add_argument("--size", type=int, default=2000, help="the catalog's build size (its plan is redone)")
    parser.add_argument("--seed", type=int, default=0, help="the catalog's build seed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from tqdm import tqdm

    from recommender.democatalog.build import BuildConfig, BuildReport, _display_title, _slug, select_tracks
    from recommender.democatalog.instruments import ENSEMBLES, families_of
    from recommender.democatalog.plan import excerpt_start_q, render_job
    from recommender.democatalog.render import find_soundfont
    from recommender.models import DatasetSplit, Track

    rows = DatasetSplit.objects.filter(name=args.split).values_list("track_id", "part")
    part_of = dict(rows)
    tracks = [t for t in Track.objects.filter(id__in=part_of) if part_of[t.id] == args.part]
    train_ids = [tid for tid, part in part_of.items() if part == "train"]
    train_families = set().union(*(families_of(t.labels.get("instruments", [])) for t in
                                   Track.objects.filter(id__in=train_ids)))
    ensembles = training_ensembles(train_families)
    print(f"{len(tracks)} {args.part} tracks of {args.split}; training families {sorted(train_families)}; "
          f"renditions drawn from {len(ensembles)} ensembles: {', '.join(ensembles)}")

    config = BuildConfig(size=args.size, seed=args.seed, progress=False)
    planned = select_tracks(config, BuildReport(out_dir=Path("/tmp")), lambda items, **_: items)
    by_file = {}
    for t in planned:
        file = (f"{t.spec.style}/{_slug(_display_title(t))}-{hashlib.sha1(t.candidate.key.encode()).hexdigest()[:8]}"
                f"-{t.excerpt}.wav")
        by_file[file] = t
    tasks, missing = [], 0
    for track in tracks:
        file = "/".join(Path(track.audio_path).parts[-2:])
        plan = by_file.get(file)
        if plan is None:
            missing += 1
            continue
        start_q = excerpt_start_q(plan.work, plan.excerpt, plan.excerpts)
        original = ENSEMBLES[track.labels["ensemble"]]
        job = render_job("", plan.work, original, plan.seconds_per_q, start_q, config.excerpt_s,
                         random.Random(f"{config.seed}:render:{file}"))
        choice = random.Random(f"rendition:{file}")
        others = [name for name in ensembles if name != original.name]
        renditions = [render_job("", plan.work, ENSEMBLES[name], plan.seconds_per_q, start_q, config.excerpt_s,
                                 random.Random(f"{config.seed}:render:{file}"))
                      for name in choice.sample(others, args.renditions)]
        need_audio = args.audio_views if not all(view_path("audio", track.checksum, k).exists()
                                                 for k in range(args.audio_views)) else 0
        need_renditions = [] if all(view_path("rendition", track.checksum, k).exists()
                                    for k in range(args.renditions)) else renditions
        if need_audio or need_renditions:
            tasks.append((track.checksum, job, need_audio, need_renditions))
    if missing:
        print(f"{missing} tracks not in the re-planned catalog (another size or seed?)")
    started = time.monotonic()
    context = multiprocessing.get_context("forkserver")
    with context.Pool(args.workers, _init_worker, (find_soundfont(settings.SOUNDFONT), str(settings.MUSICNN_CACHE))) \
            as pool:
        written = sum(n for _, n in tqdm(pool.imap_unordered(_views_of, tasks), total=len(tasks), unit="track"))
    print(f"{written} views written for {len(tasks)} tracks in {time.monotonic() - started:.0f} s "
          f"({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
