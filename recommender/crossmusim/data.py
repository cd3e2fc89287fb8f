"""What a training run and a validator read: the tracks' audio, caption embeddings and labels.

A plain container, so that the training loop, the validators and the bench's rows all
take the same aligned lists without knowing where they came from (database, files or
the synthetic catalog).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .towers import TEXT_EMBEDDING_DIM


@dataclass
class TrainingData:
    """Training tracks, aligned lists (one entry per track).

    ``patches`` (pretrained tower) or ``logmels`` (scratch tower) carry the audio;
    ``patch_views`` optionally give each track more patch arrays of the same music heard
    otherwise (an audio-side timbre augmentation, another rendition), which training may
    pool instead of ``patches`` (``AugmentConfig.view_probability``);
    ``caption_embeddings`` are the frozen MiniLM embeddings of each track's kept
    descriptions with ``caption_weights`` their mining scores; ``labels`` are integer
    classes for the supervised reference. Use :meth:`from_texts` to embed raw texts.
    """

    patches: list[np.ndarray] | None = None
    logmels: list[np.ndarray] | None = None
    caption_embeddings: list[np.ndarray] | None = None
    caption_weights: list[np.ndarray] | None = None
    labels: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    patch_views: list[list[np.ndarray]] | None = None

    def __len__(self) -> int:
        audio = self.patches if self.patches is not None else self.logmels
        return 0 if audio is None else len(audio)

    @classmethod
    def from_texts(cls, captions: Sequence[Sequence[str]], scores: Sequence[Sequence[float]] | None = None,
                   encoder: Callable[[list[str]], np.ndarray] | None = None, **audio) -> TrainingData:
        """Embed every distinct caption once with the frozen text encoder (MiniLM by default)."""
        if encoder is None:
            from .text_encoder import encode_texts as encoder
        distinct = sorted({text for texts in captions for text in texts})
        vectors = encoder(distinct) if distinct else np.zeros((0, TEXT_EMBEDDING_DIM), np.float32)
        row = {text: i for i, text in enumerate(distinct)}
        embeddings = [vectors[[row[t] for t in texts]] if texts else vectors[:0] for texts in captions]
        weights = [np.asarray(s if s is not None else np.ones(len(t)), dtype=np.float32) for t, s in
                   zip(captions, scores or [None] * len(captions), strict=True)]
        return cls(caption_embeddings=embeddings, caption_weights=weights, **audio)
