"""A labelled synthetic world for the online proofs when the demo catalog is not built (minutes, not ~15).

    ABPLATFORM_VAR_DIR=... .venv/bin/python bench/proof_world.py --tracks 1200

Writes into the platform's database (the one ``manage.py`` uses): ``--tracks`` Track rows (no audio) with
style, ensemble and tempo labels over 8 styles x 6 ensembles, and two indexed embedding models activated for
the arms: ``proof-timbre`` (baseline: neighbours share the seed's ensemble, the shortcut an audio-only model
takes) and ``proof-style`` (crossmusim: neighbours share its style). The simulator's listeners weigh style
over ensemble, so the style model should earn more clicks; how much more is what the A/B proofs measure.
It is a toy of the demo world, named as such in every table that uses it (docs/placements.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from recommender.models import EmbeddingModel, Track  # noqa: E402
from recommender.services.embeddings import (  # noqa: E402
    embedding_model_activate,
    embedding_model_register,
    track_embeddings_write,
)

STYLES = ("reel", "jig", "waltz", "chorale", "hornpipe", "madrigal", "polka", "march")
ENSEMBLES = ("fiddle", "piano", "flute+guitar", "strings", "brass", "choir")


def build(n_tracks: int, dim: int, seed: int) -> tuple[EmbeddingModel, EmbeddingModel]:
    rng = np.random.default_rng(seed)
    tracks = Track.objects.bulk_create(
        Track(title=f"proof tune {i}", artist=f"composer {i % 17}", album="proof world", duration_s=30.0,
              sample_rate=16000, checksum=hashlib.sha256(f"proof-world-{seed}-{i}".encode()).hexdigest(),
              audio_path="none",
              labels={"style": STYLES[i % len(STYLES)], "ensemble": ENSEMBLES[(i // len(STYLES)) % len(ENSEMBLES)],
                      "tempo_bpm": int(70 + 5 * (i % 19))})
        for i in range(n_tracks))
    style_dirs, ensemble_dirs = rng.normal(size=(len(STYLES), dim)), rng.normal(size=(len(ENSEMBLES), dim))
    style = np.array([style_dirs[STYLES.index(t.labels["style"])] for t in tracks])
    ensemble = np.array([ensemble_dirs[ENSEMBLES.index(t.labels["ensemble"])] for t in tracks])
    ids = [t.pk for t in tracks]
    models = []
    # Each model sees one label only (plus noise): the timbre model's neighbours share the seed's ensemble and
    # its style by chance (1 in 8), the style model's the reverse.
    for name, kind, vectors in (("proof-timbre", "baseline", 3 * ensemble), ("proof-style", "crossmusim", 3 * style)):
        model = embedding_model_register(name=name, kind=kind, dim=dim)
        track_embeddings_write(model=model, track_ids=ids, vectors=vectors + rng.normal(size=vectors.shape))
        models.append(embedding_model_activate(model=model, arm=kind))
    return models[0], models[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=1200)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    baseline, crossmusim = build(args.tracks, args.dim, args.seed)
    print(f"{args.tracks} tracks; baseline arm: {baseline} (id {baseline.pk}), crossmusim arm: {crossmusim} "
          f"(id {crossmusim.pk})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
