"""Embedding with a registered model: load its checkpoint once per process, embed audio or text.

Shared by indexing (audio side) and the search endpoint (text side), so both go through
the same tower code from ``recommender.crossmusim``. No database writes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from recommender.crossmusim.baselines import baseline_embeddings
from recommender.crossmusim.features import pool_many
from recommender.crossmusim.inference import embed_audio, embed_text
from recommender.models import EmbeddingModel


class NotCrossModalError(ValueError):
    """The model has no text tower (e.g. the baseline arm), so it cannot embed a text query."""


class CheckpointError(RuntimeError):
    """The model's checkpoint file is missing or unreadable."""


def baseline_stats(model: EmbeddingModel) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The training-set mean/std a z-scored baseline was registered with (``None, None`` if raw)."""
    if not model.config.get("standardize"):
        return None, None
    path = Path(model.checkpoint_path)
    if not path.exists():
        raise CheckpointError(f"{model}: feature statistics {model.checkpoint_path or '(none)'} not found")
    with np.load(path) as stats:
        return stats["mean"], stats["std"]


@lru_cache(maxsize=4)
def _load_checkpoint(path: str, mtime: float):
    from recommender.crossmusim.factory import load_model

    return load_model(path)


def crossmusim_network(model: EmbeddingModel):
    """The torch model behind a crossmusim EmbeddingModel (cached per checkpoint file and mtime)."""
    if model.kind != EmbeddingModel.Kind.CROSSMUSIM:
        raise NotCrossModalError(f"{model} is a {model.kind} model without a text tower")
    path = Path(model.checkpoint_path)
    if not model.checkpoint_path or not path.exists():
        raise CheckpointError(f"{model}: checkpoint {model.checkpoint_path or '(none)'} not found")
    return _load_checkpoint(str(path), path.stat().st_mtime)


def audio_embed(model: EmbeddingModel, patch_features: Sequence[np.ndarray]) -> np.ndarray:
    """Per-track patch features -> [N, model.dim] vectors in ``model``'s space."""
    if model.kind == EmbeddingModel.Kind.BASELINE:
        start, stop = model.config.get("feature_columns") or (0, None)
        pooled = pool_many([p[:, start:stop] for p in patch_features])
        return baseline_embeddings(pooled, *baseline_stats(model))
    pooled = pool_many(list(patch_features))
    network = crossmusim_network(model)
    if network.config.audio.kind != "pretrained":
        raise NotImplementedError(f"{model}: indexing a {network.config.audio.kind} audio tower is not supported")
    return embed_audio(network, pooled).astype(np.float32)


def text_embed(model: EmbeddingModel, texts: Sequence[str]) -> np.ndarray:
    """Texts -> [N, model.dim] through the frozen sentence encoder and the model's text tower."""
    return embed_text(crossmusim_network(model), list(texts)).astype(np.float32)


def backbone_extractor(name: str):
    """The pretrained backbone that computes patch features (``patch_features(wave16k)``); its converted weights
    are cached in the MUSICNN_CACHE setting's folder."""
    from recommender.crossmusim.musicnn import MusicnnExtractor

    return MusicnnExtractor(model=name, cache_dir=settings.MUSICNN_CACHE)


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads; on a 2-core machine shared with other jobs, one thread avoids spin contention."""
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
