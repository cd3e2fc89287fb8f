"""The training loop for CrossMuSim and for the audio-only reference rows.

One loop for every objective (``TrainConfig.objective``, see :mod:`.objectives`): the model
comes from :mod:`.factory`, the loss from :func:`.objectives.create_loss`, embedding from
:mod:`.inference`. Runs are deterministic for a seed (explicit generators, single-threaded
data sampling), report progress through a callback ``progress(step, total_steps, loss)``,
save and resume checkpoints, and make their choices (best step, early stop) on a
*validation* scorer only — the caller passes ``validator(model) -> float`` built from the
validation split (:func:`.validation.retrieval_validator`).

Outside the core, only the platform's training service calls this module; everything a
trained model is used for lives elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .augment import add_feature_noise, augment_logmel, crop_logmels, sample_patch_windows
from .config import TrainConfig
from .data import TrainingData
from .factory import create_model_for_data, read_checkpoint, save_checkpoint
from .features import pad_patches, pool_many, pool_masked
from .objectives import Batch, create_loss
from .timbre import TimbreTransplant, drop_timbre_channels, mix_timbre_channels, timbre_channel_mask
from .towers import CrossMuSimModel
from .validation import Validator

ProgressCallback = Callable[[int, int, float], None]


@dataclass
class TrainResult:
    model: CrossMuSimModel
    config: TrainConfig
    steps_done: int
    losses: list[float]
    best_step: int
    best_val_score: float | None
    val_history: list[tuple[int, float]]
    train_seconds: float
    resumed_from_step: int = 0
    classifier: nn.Module | None = None  # the style head of the supervised reference


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _Batcher:
    """Shuffled epochs of track indices, from its own numpy generator."""

    def __init__(self, indices: np.ndarray, batch_size: int, rng: np.random.Generator):
        self.indices, self.batch_size, self.rng = indices, min(batch_size, len(indices)), rng
        self.queue: list[int] = []

    def next(self) -> np.ndarray:
        if len(self.queue) < self.batch_size:
            self.queue += list(self.rng.permutation(self.indices))
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
        return np.array(batch)


class _PatchSource:
    """The padded patches training pools from: each track's own, then its extra views (``patch_views``).

    ``rows`` picks, per track of a batch, its own patches or (with ``view_probability``) one of its
    views; with no views or probability 0 it draws nothing, so such a run is the same as before views.
    """

    def __init__(self, data: TrainingData, view_probability: float):
        patches = list(data.patches)
        self.views: list[list[int]] = [[] for _ in patches]
        if data.patch_views and view_probability > 0:
            for track, views in enumerate(data.patch_views):
                for view in views:
                    self.views[track].append(len(patches))
                    patches.append(view)
        self.probability = view_probability if any(self.views) else 0.0
        self.padded, self.mask = pad_patches(patches)

    def rows(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = np.array(batch)
        if self.probability > 0:
            for position, track in enumerate(batch):
                views = self.views[track]
                if views and rng.random() < self.probability:
                    rows[position] = views[rng.integers(len(views))]
        return rows


def _audio_views(data, model, config, batch, source, gen, rng, transplant=None):
    """One augmented audio input for the tracks of ``batch`` (pooled features or log-mel crops)."""
    aug = config.augment
    if config.model.audio.kind == "pretrained":
        rows = source.rows(batch, rng)
        window = sample_patch_windows(source.mask[rows], aug.patch_window_min_frac, gen)
        pooled = pool_masked(source.padded[rows], window)
        if aug.view_channels == "timbral" and source.probability > 0:
            # only the timbral channels come from the view: the temporal and mid-end ones stay the track's own
            own = pool_masked(source.padded[batch], sample_patch_windows(source.mask[batch],
                                                                         aug.patch_window_min_frac, gen))
            pooled = torch.where(timbre_channel_mask(pooled.shape[1]), pooled, own)
        if transplant is not None:
            pooled = transplant(pooled, batch, aug.timbre_transplant, gen)
        timbral = timbre_channel_mask(pooled.shape[1])
        pooled = mix_timbre_channels(pooled, timbral, aug.timbre_mix, gen)
        pooled = add_feature_noise(pooled, model.audio.input_std, aug.feature_noise, gen)
        return drop_timbre_channels(pooled, timbral, aug.timbre_dropout, model.audio.input_mean, gen)
    crops = crop_logmels([data.logmels[i] for i in batch], config.model.audio.scratch.crop_frames, rng)
    return augment_logmel(crops, aug, gen)


def train_crossmusim(data: TrainingData, config: TrainConfig, progress: ProgressCallback | None = None,
                     validator: Validator | None = None, resume: bool = True) -> TrainResult:
    """Train a model on ``data`` with ``config.objective``; returns the best-on-validation model."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = create_model_for_data(config.model, data)
    objective = create_loss(config, data)
    classifier = objective.classifier
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    source = _PatchSource(data, config.augment.view_probability) if config.model.audio.kind == "pretrained" \
        else None
    transplant = None
    if config.model.audio.kind == "pretrained" and config.augment.timbre_transplant > 0:
        transplant = TimbreTransplant(pool_many(data.patches), config.augment.timbre_clusters, config.seed)
    batcher = _Batcher(objective.usable, config.batch_size, rng)

    start_step, losses, val_history = 0, [], []
    best_score, best_step, best_state, stale = None, 0, None, 0
    checkpoint = Path(config.checkpoint_path) if config.checkpoint_path else None
    if resume and checkpoint is not None and checkpoint.exists():
        payload = read_checkpoint(checkpoint)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        if classifier is not None and payload.get("classifier") is not None:
            classifier.load_state_dict(payload["classifier"])
        start_step, losses = payload["step"], payload.get("losses", [])
        gen.set_state(payload["torch_rng"])
        torch.set_rng_state(payload["global_torch_rng"])  # dropout draws from the global generator
        rng.bit_generator.state = payload["numpy_rng"]
        batcher.queue = payload.get("batch_queue", [])
        best_score, best_step, val_history = payload.get("best_score"), payload.get("best_step", 0), \
            payload.get("val_history", [])
        best_state = payload.get("best_state")

    def snapshot(step: int) -> None:
        save_checkpoint(checkpoint, model, optimizer=optimizer, step=step, train_config=config, extra={
            "losses": losses, "torch_rng": gen.get_state(), "global_torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
            "batch_queue": batcher.queue, "best_score": best_score, "best_step": best_step,
            "val_history": val_history, "best_state": best_state,
            "classifier": classifier.state_dict() if classifier is not None else None})

    began = time.perf_counter()
    step = start_step
    for step in range(start_step, config.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.steps, config.warmup_steps)
        indices = batcher.next()
        view = partial(_audio_views, data, model, config, indices, source, gen, rng, transplant)
        loss = objective(model, Batch(indices=indices, audio=view(), another_view=view, rng=rng, generator=gen))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps, losses[-1])

        done = step + 1
        if validator is not None and (done % config.eval_every == 0 or done == config.steps):
            model.eval()
            score = float(validator(model))
            val_history.append((done, score))
            if best_score is None or score > best_score:
                best_score, best_step, stale = score, done, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
        if checkpoint is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
            snapshot(done)
        if config.patience and stale >= config.patience:
            break
    steps_done = step + 1 if config.steps > start_step else start_step
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_step = steps_done
    if checkpoint is not None:
        snapshot(steps_done)
    return TrainResult(model=model.eval(), config=config, steps_done=steps_done, losses=losses, best_step=best_step,
                       best_val_score=best_score, val_history=val_history,
                       train_seconds=time.perf_counter() - began, resumed_from_step=start_step,
                       classifier=classifier)
