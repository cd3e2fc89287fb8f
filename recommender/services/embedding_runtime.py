"""Embedding with a registered model: load its checkpoint once per process, embed audio or text.

Shared by indexing (audio side) and the search endpoint (text side), so both go through
the same tower code from ``recommender.crossmusim``. No database writes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from recommender.crossmusim.features import pool_many
from recommender.crossmusim.text_encoder import encode_texts
from recommender.models import EmbeddingModel


class NotCrossModalError(ValueError):
    """The model has no text tower (e.g. the baseline arm), so it cannot embed a text query."""


class CheckpointError(RuntimeError):
    """The model's checkpoint file is missing or unreadable."""


@lru_cache(maxsize=4)
def _load_checkpoint(path: str, mtime: float):
    from recommender.crossmusim.train import load_checkpoint

    network = load_checkpoint(path)
    network.eval()
    return network


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
    pooled = pool_many(list(patch_features))
    if model.kind == EmbeddingModel.Kind.BASELINE:
        return pooled
    network = crossmusim_network(model)
    with torch.no_grad():
        return network.encode_audio(torch.from_numpy(pooled)).numpy().astype(np.float32)


def text_embed(model: EmbeddingModel, texts: Sequence[str]) -> np.ndarray:
    """Texts -> [N, model.dim] through the frozen sentence encoder and the model's text tower."""
    network = crossmusim_network(model)
    sentence = encode_texts(list(texts))
    with torch.no_grad():
        return network.encode_text(torch.from_numpy(sentence)).numpy().astype(np.float32)
