"""The three training objectives behind one interface, so that the training loop has no objective branches.

* ``"text"`` — CrossMuSim: audio tower vs. text tower, :class:`~.loss.CrossModalInfoNCE`
  (duplicate captions masked, pairs weighted by mining score), a different kept caption
  per track at each step, plus :class:`~.timbre.TimbreDecorrelation` when its weight is set;
* ``"simclr"`` — audio only: two augmented views of each track, :class:`~.loss.SimCLRLoss`;
* ``"supervised"`` — audio only with a linear style head (the ceiling reference).

Each objective checks that the data carries what it needs, says which tracks it can train
on, and turns one batch into a loss; extra trained weights (the style head) are its own
parameters. :func:`create_loss` picks one from ``TrainConfig.objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from .augment import add_feature_noise, choose_captions
from .config import TrainConfig
from .data import TrainingData
from .features import pool_many
from .loss import CrossModalInfoNCE, SimCLRLoss, duplicate_caption_mask
from .timbre import TimbreDecorrelation
from .towers import CrossMuSimModel


@dataclass
class Batch:
    """One step's tracks, their augmented audio view, and the run's random sources.

    ``another_view()`` draws a further augmented view of the same tracks (SimCLR's second
    view); objectives draw from ``rng`` / ``generator`` in a fixed order, so a run stays
    reproducible from its seed and resumable from a checkpoint.
    """

    indices: np.ndarray
    audio: torch.Tensor
    another_view: Callable[[], torch.Tensor]
    rng: np.random.Generator
    generator: torch.Generator


class Objective(nn.Module):
    """``objective(model, batch) -> loss``; ``usable`` are the track indices it trains on."""

    usable: np.ndarray

    def __init__(self) -> None:
        super().__init__()
        self.classifier: nn.Module | None = None  # the supervised reference's style head (a submodule there)

    def forward(self, model: CrossMuSimModel, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


class TextObjective(Objective):
    """Audio vs. one kept caption per track, drawn afresh each step (optionally by mining score)."""

    def __init__(self, config: TrainConfig, data: TrainingData):
        super().__init__()
        if data.caption_embeddings is None:
            raise ValueError("the text objective needs TrainingData.caption_embeddings")
        self.usable = np.array([i for i, e in enumerate(data.caption_embeddings) if len(e)])
        if len(self.usable) < 2:
            raise ValueError("fewer than two training tracks have a kept description")
        # every kept caption in one tensor; a track's captions start at its offset
        self.flat = torch.as_tensor(np.concatenate([data.caption_embeddings[i] for i in self.usable]))
        self.offsets = np.zeros(len(data), dtype=np.int64)
        self.offsets[self.usable] = np.concatenate(
            [[0], np.cumsum([len(data.caption_embeddings[i]) for i in self.usable])[:-1]])
        self.caption_weights = data.caption_weights
        self.augment = config.augment
        self.duplicate_threshold = config.duplicate_threshold
        self.use_score_weights = config.use_score_weights
        self.criterion = CrossModalInfoNCE(config.duplicates)
        self.timbre = None
        if config.timbre_decorrelation > 0:
            if data.patches is None:
                raise ValueError("timbre_decorrelation needs the pretrained tower's patches")
            self.timbre = TimbreDecorrelation.from_pooled(pool_many(data.patches), config.timbre_decorrelation,
                                                          config.timbre_components)

    def forward(self, model: CrossMuSimModel, batch: Batch) -> torch.Tensor:
        weights_per_track = [self.caption_weights[i] for i in batch.indices]
        chosen = choose_captions(weights_per_track, batch.rng, self.augment.sample_by_score)
        raw_text = self.flat[self.offsets[batch.indices] + chosen]
        text_in = add_feature_noise(raw_text, model.text.input_std, self.augment.text_noise, batch.generator)
        out = model(batch.audio, text_in)
        weights = None
        if self.use_score_weights:
            w = torch.as_tensor(np.array([weights_per_track[k][c] for k, c in enumerate(chosen)]))
            weights = w if w.sum() > 0 else None
        loss = self.criterion(out["audio_features"], out["text_features"], out["logit_scale"],
                              duplicate_mask=duplicate_caption_mask(raw_text, self.duplicate_threshold),
                              weights=weights)
        if self.timbre is not None:
            loss = loss + self.timbre(out["audio_features"], batch.indices)
        return loss


class SimCLRObjective(Objective):
    """Two augmented views of each track pulled together (audio only)."""

    def __init__(self, config: TrainConfig, data: TrainingData):
        super().__init__()
        self.usable = np.arange(len(data))
        self.criterion = SimCLRLoss(config.simclr_temperature)

    def forward(self, model: CrossMuSimModel, batch: Batch) -> torch.Tensor:
        second = batch.another_view()
        return self.criterion(model.encode_audio(batch.audio, normalize=False),
                              model.encode_audio(second, normalize=False))


class SupervisedObjective(Objective):
    """Cross-entropy of a linear style head on the audio embedding (the ceiling reference)."""

    def __init__(self, config: TrainConfig, data: TrainingData):
        super().__init__()
        if data.labels is None:
            raise ValueError("the supervised objective needs TrainingData.labels")
        self.usable = np.arange(len(data))
        self.labels = data.labels
        self.classifier = nn.Linear(config.model.embed_dim, int(np.max(data.labels)) + 1)

    def forward(self, model: CrossMuSimModel, batch: Batch) -> torch.Tensor:
        logits = self.classifier(model.encode_audio(batch.audio, normalize=False))
        return F.cross_entropy(logits, torch.as_tensor(self.labels[batch.indices], dtype=torch.long))


OBJECTIVES: dict[str, type[Objective]] = {
    "text": TextObjective, "simclr": SimCLRObjective, "supervised": SupervisedObjective,
}


def create_loss(config: TrainConfig, data: TrainingData) -> Objective:
    """The objective ``config.objective`` names, checked against ``data``.

    Build it after the model: the style head draws its initial weights from the global
    torch generator, in that order since the first runs.
    """
    try:
        objective = OBJECTIVES[config.objective]
    except KeyError:
        raise ValueError(f"unknown objective {config.objective!r} (expected one of {sorted(OBJECTIVES)})") from None
    return objective(config, data)
