"""Embedding with a trained model: tracks and texts into the shared space.

What the indexer (audio side), the search endpoint (text side), the validators and the
bench call on a model once it exists; nothing here trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

from .augment import crop_logmels
from .data import TrainingData
from .features import pool_many
from .towers import CrossMuSimModel


@torch.no_grad()
def embed_audio(model: CrossMuSimModel, audio, normalize: bool = True, batch_size: int = 256) -> np.ndarray:
    """Embed tracks: pooled features [N, input_dim] (pretrained tower) or a list of log-mels (scratch tower).

    A scratch-tower track is cut into crop-sized windows whose embeddings are averaged, so that
    long tracks are seen as the network saw them in training.
    """
    model.eval()
    if model.config.audio.kind == "pretrained":
        x = torch.as_tensor(np.asarray(audio), dtype=torch.float32)
        out = torch.cat([model.encode_audio(x[i: i + batch_size], normalize=False)
                         for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, model.config.embed_dim)
    else:
        frames = model.config.audio.scratch.crop_frames
        rows = []
        for logmel in audio:
            starts = range(0, max(1, logmel.shape[1] - frames + 1), frames)
            windows = crop_logmels([logmel[:, s: s + frames] for s in starts], frames, None)
            rows.append(F.normalize(model.encode_audio(windows, normalize=False), dim=-1).mean(0))
        out = torch.stack(rows) if rows else torch.zeros(0, model.config.embed_dim)
    return (F.normalize(out, dim=-1) if normalize else out).numpy()


@torch.no_grad()
def embed_text(model: CrossMuSimModel, texts: Sequence[str] | np.ndarray, normalize: bool = True) -> np.ndarray:
    """Texts (strings, embedded with the frozen MiniLM) or precomputed [N, 384] embeddings -> shared space."""
    if len(texts) and isinstance(texts[0], str):
        from .text_encoder import encode_texts

        texts = encode_texts(list(texts))
    model.eval()
    x = torch.as_tensor(np.asarray(texts), dtype=torch.float32)
    return model.encode_text(x, normalize=normalize).numpy()


def audio_inputs(data: TrainingData, kind: str) -> np.ndarray | list[np.ndarray] | None:
    """What :func:`embed_audio` takes for ``data``: pooled features or the list of log-mels."""
    return pool_many(data.patches) if kind == "pretrained" else data.logmels
