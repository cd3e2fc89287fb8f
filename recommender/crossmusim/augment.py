"""Online augmentation: every training step sees each track a little differently.

* pretrained tower: a different contiguous window of 3-s patches is pooled at each step,
  plus Gaussian feature noise (in units of each feature's spread); feature dropout lives in
  the tower (``input_dropout``); the timbral channels can be mixed between tracks and dropped
  (``timbre_mix``, ``timbre_dropout``: see :mod:`.timbre`);
* text: a different kept description per track at each step (uniformly, or in proportion
  to the mining score);
* scratch tower: random crops of the log-mel, a random gain (a shift in the log domain),
  time and frequency masks, and noise.

All randomness comes from explicit ``torch.Generator`` / ``numpy.random.Generator``
objects so that a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AugmentConfig:
    patch_window_min_frac: float = 0.5  # each step pools a random window of >= this share of the patches
    feature_noise: float = 0.1  # std of Gaussian noise on pooled features, in feature standard deviations
    timbre_mix: float = 0.0  # timbral channels moved up to this share towards another track's (timbre.py)
    timbre_dropout: float = 0.0  # each timbral channel set to its training mean with this probability
    timbre_transplant: float = 0.0  # up to this share of a move to another timbre cluster's mean (timbre.py)
    timbre_clusters: int = 16  # k-means clusters of the training tracks' timbral channels
    # Timbre views (recommender.crossmusim.audio_augment; the platform computes ``audio_views`` per training track):
    # each step a track is pooled from one of its views with ``view_probability`` (TrainingData.patch_views).
    # Off by default: on validation, 2 views at 0.5 lift unfamiliar instruments most (0.295 -> 0.334) but every
    # rate tried (0.15-0.5) costs the default split 0.010-0.021 of x-inst P@10, beyond its seeds' spread
    # (docs/model.md); an option for catalogs whose instruments the training tracks do not play.
    audio_views: int = 0
    view_probability: float = 0.0
    view_channels: str = "all"  # "timbral": only the timbral channels come from the view (timbre.py)
    text_noise: float = 0.0  # std of Gaussian noise on the frozen text embeddings
    sample_by_score: bool = False  # draw descriptions in proportion to their mining score
    # scratch (log-mel) tower
    gain_range: float = 0.5  # +/- shift of log10 power (about +/- 5 dB)
    time_masks: int = 2
    time_mask_frames: int = 16
    freq_masks: int = 2
    freq_mask_bins: int = 8
    logmel_noise: float = 0.05


def sample_patch_windows(mask: torch.Tensor, min_frac: float, generator: torch.Generator) -> torch.Tensor:
    """A random contiguous window of valid patches per row: [B, P] bool -> [B, P] bool (never empty)."""
    lengths = mask.sum(1)
    low = torch.clamp(torch.ceil(lengths.float() * min_frac), min=1).long()
    span = (lengths - low + 1).clamp_min(1)
    width = low + (torch.rand(len(lengths), generator=generator) * span).long()
    start = (torch.rand(len(lengths), generator=generator) * (lengths - width + 1).clamp_min(1)).long()
    positions = torch.arange(mask.shape[1]).unsqueeze(0)
    return mask & (positions >= start.unsqueeze(1)) & (positions < (start + width).unsqueeze(1))


def add_feature_noise(x: torch.Tensor, scale: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, (sigma * scale)^2), per feature; ``scale`` is the feature's standard deviation."""
    if sigma <= 0:
        return x
    return x + torch.randn(x.shape, generator=generator) * sigma * scale


def choose_captions(weights_per_track: list[np.ndarray], rng: np.random.Generator, by_score: bool) -> np.ndarray:
    """Index of one description per track (tracks must have at least one)."""
    chosen = np.empty(len(weights_per_track), dtype=np.int64)
    for i, weights in enumerate(weights_per_track):
        if by_score and weights.sum() > 0:
            chosen[i] = rng.choice(len(weights), p=weights / weights.sum())
        else:
            chosen[i] = rng.integers(len(weights))
    return chosen


def crop_logmels(logmels: list[np.ndarray], frames: int, rng: np.random.Generator | None) -> torch.Tensor:
    """Random (or, with ``rng=None``, centred) crops of ``frames`` frames: -> [B, n_mels, frames]; short ones padded."""
    crops = []
    for logmel in logmels:
        total = logmel.shape[1]
        if total <= frames:
            crops.append(np.pad(logmel, ((0, 0), (0, frames - total))))
            continue
        start = rng.integers(total - frames + 1) if rng is not None else (total - frames) // 2
        crops.append(logmel[:, start: start + frames])
    return torch.as_tensor(np.stack(crops), dtype=torch.float32)


def augment_logmel(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gain, time/frequency masks and noise on a [B, n_mels, T] log-mel batch (returns a new tensor)."""
    out = batch.clone()
    n, n_mels, n_frames = out.shape
    gain = (torch.rand(n, 1, 1, generator=generator) * 2 - 1) * config.gain_range
    out = (out + gain).clamp_min(0.0)  # log10(1 + 10000 x) >= 0: silence stays silence
    for _ in range(config.time_masks):
        width = (torch.rand(n, generator=generator) * config.time_mask_frames).long()
        start = (torch.rand(n, generator=generator) * (n_frames - width).clamp_min(1)).long()
        t = torch.arange(n_frames)
        masked = (t >= start[:, None]) & (t < (start + width)[:, None])
        out = out.masked_fill(masked[:, None, :], 0.0)
    for _ in range(config.freq_masks):
        width = (torch.rand(n, generator=generator) * config.freq_mask_bins).long()
        start = (torch.rand(n, generator=generator) * (n_mels - width).clamp_min(1)).long()
        f = torch.arange(n_mels)
        masked = (f >= start[:, None]) & (f < (start + width)[:, None])
        out = out.masked_fill(masked[:, :, None], 0.0)
    if config.logmel_noise > 0:
        out = out + torch.randn(out.shape, generator=generator) * config.logmel_noise
    return out
