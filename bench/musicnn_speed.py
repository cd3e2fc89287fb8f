"""Speed of the torch musicnn port: seconds of feature extraction per 30-s track on one thread.

    .venv/bin/python bench/musicnn_speed.py [--tracks 8] [--threads 1] [--batch-sizes 1,2,4,10]

Prints wall and CPU time per track (CPU time of this process is the steadier figure on a
shared machine), for one track at a time (``patch_features``) at several patch batch
sizes and for the many-track call (``extract_patch_features_batch``). The log-mel
front-end is included. Compare with the original (TensorFlow) figures from
``bench/tools/make_musicnn_reference.py --timing``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of  # noqa: E402

from recommender.crossmusim.musicnn import MusicnnExtractor  # noqa: E402


def synthetic_track(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tone = sum(0.05 / k * np.sin(2 * np.pi * (220 + 20 * seed) * k * t) for k in range(1, 6))
    return (tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tracks", type=int, default=8, help="tracks for the many-track call")
    parser.add_argument("--batch-sizes", default="1,2,4,10")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="MTT_musicnn")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    extractor = MusicnnExtractor(model=args.model)
    print(f"extractor ready in {time.perf_counter() - start:.2f} s (weights converted or read from the cache)")
    track = synthetic_track(args.seconds, 0)
    print(f"{args.seconds:.0f}-s track: {len(extractor.patches(track))} patches, D = {extractor.dim}")
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        extractor.batch_size = batch_size
        wall, cpu = best_of(lambda: extractor.patch_features(track), args.repeats)
        print(
            f"patch_features, {batch_size} patches per call, {args.threads} thread(s): "
            f"{wall:.3f} s wall, {cpu:.3f} s CPU"
        )
    extractor.batch_size = 2
    tracks = [synthetic_track(args.seconds, seed) for seed in range(args.tracks)]
    wall, cpu = best_of(lambda: extractor.extract_patch_features_batch(tracks), max(1, args.repeats // 2))
    print(
        f"extract_patch_features_batch of {args.tracks} tracks: {wall / args.tracks:.3f} s wall, "
        f"{cpu / args.tracks:.3f} s CPU per track"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
