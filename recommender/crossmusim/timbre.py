"""Timbre robustness: which pooled-feature channels carry timbre, augmentations on them, a decorrelation term.

A projection trained on a few instrument ensembles learns to lean on the timbres it saw; on an
instrument it never heard it then groups tracks by ensemble instead of by style. The musicnn
"pool" features say where timbre lives: each 753-channel block (mean_pool or max_pool of one
3-s patch, then mean or max over the track's patches: four blocks in a 3,012-d input) starts with
the 408 *timbral* front-end filters (7 frames x 38 or 67 mel bands, max over frequency), followed
by 153 temporal filters and 192 mid-end channels. The augmentations act on the pooled features
(the cache keeps musicnn's outputs, not audio: an audio-side augmentation would cost one musicnn
pass per view), at training time only, so a model still embeds audio alone:

* :func:`drop_timbre_channels` replaces each timbral channel, with probability ``p``, by its
  training mean (zero after the tower's standardisation);
* :func:`mix_timbre_channels` moves a track's timbral channels part of the way towards those of
  another track of the batch, while its text stays its own (a timbre swap);
* :class:`TimbreTransplant` moves a whole track (every channel) from the mean of its timbre
  cluster to the mean of another one (k-means over the training tracks' timbral channels, which
  on a catalog like ours finds the ensembles without being told them): "the same music, as that
  other group of timbres would make its features", on the channels timbre reaches indirectly too;
* :class:`TimbreDecorrelation` penalises the cross-covariance between the audio embedding and
  the leading principal components of the tracks' timbral channels (no instrument labels).

An input whose width is not the musicnn layout has no known timbral channels: every channel counts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .musicnn.network import FRONTEND_TIMBRAL_FILTERS, POOL_CHANNELS

TIMBRAL_CHANNELS = 2 * FRONTEND_TIMBRAL_FILTERS  # 408 at the start of each 753-channel block


def timbre_channel_mask(dim: int) -> torch.Tensor:
    """[dim] bool: True on the timbral front-end channels of pooled musicnn features (all True otherwise)."""
    if dim <= 0 or dim % POOL_CHANNELS:
        return torch.ones(max(dim, 0), dtype=torch.bool)
    return (torch.arange(dim) % POOL_CHANNELS) < TIMBRAL_CHANNELS


def drop_timbre_channels(x: torch.Tensor, mask: torch.Tensor, p: float, fill: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
    """Each (track, timbral channel) replaced by ``fill`` (the training mean) with probability ``p``."""
    if p <= 0:
        return x
    dropped = (torch.rand(x.shape, generator=generator) < p) & mask
    return torch.where(dropped, fill.expand_as(x), x)


def mix_timbre_channels(x: torch.Tensor, mask: torch.Tensor, strength: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Timbral channels moved a share lambda ~ U(0, strength) of the way to a random other track's."""
    if strength <= 0 or len(x) < 2:
        return x
    other = torch.randperm(len(x), generator=generator)
    share = torch.rand(len(x), 1, generator=generator) * strength
    mixed = x + share * (x[other] - x)
    return torch.where(mask, mixed, x)


def timbre_components(pooled: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and the top-``k`` principal axes ([k, n_timbral]) of the standardised timbral channels."""
    timbral = np.asarray(pooled, dtype=np.float64)[:, np.asarray(mask, dtype=bool)]
    mean, std = timbral.mean(0), timbral.std(0) + 1e-6
    _, _, vt = np.linalg.svd((timbral - mean) / std, full_matrices=False)
    return mean.astype(np.float32), std.astype(np.float32), vt[:k].astype(np.float32)


class TimbreTransplant:
    """Per-track shift ``lambda * (mean of another timbre cluster - mean of the track's own)``, lambda ~ U(0, s).

    Clusters: k-means (scipy's ``kmeans2``, seeded) on the standardised timbral channels of the
    training tracks; cluster means are taken over every channel of the pooled features.
    """

    def __init__(self, pooled: np.ndarray, k: int, seed: int):
        from scipy.cluster.vq import kmeans2

        pooled = np.asarray(pooled, dtype=np.float64)
        mask = timbre_channel_mask(pooled.shape[1]).numpy()
        timbral = pooled[:, mask]
        timbral = (timbral - timbral.mean(0)) / (timbral.std(0) + 1e-6)
        k = max(2, min(k, len(pooled)))
        _, labels = kmeans2(timbral, k, minit="++", seed=seed)
        present = np.unique(labels)
        self.labels = np.searchsorted(present, labels)
        self.means = torch.as_tensor(np.stack([pooled[labels == c].mean(0) for c in present]), dtype=torch.float32)

    def __call__(self, x: torch.Tensor, indices: np.ndarray, strength: float,
                 generator: torch.Generator) -> torch.Tensor:
        if strength <= 0 or len(self.means) < 2:
            return x
        own = torch.as_tensor(self.labels[np.asarray(indices)])
        # another cluster, uniformly: shift by 1..k-1 places around the circle of clusters
        other = (own + 1 + (torch.rand(len(own), generator=generator) * (len(self.means) - 1)).long()) % len(self.means)
        share = torch.rand(len(own), 1, generator=generator) * strength
        return x + share * (self.means[other] - self.means[own])


class TimbreDecorrelation(nn.Module):
    """``weight`` x sum of squared correlations between embedding dims and per-track timbre descriptors.

    The descriptors are the tracks' scores on the leading principal components of their (clean)
    timbral channels: on a catalog like ours they say mostly which ensemble plays. Driving their
    batch correlation with every embedding dimension to zero asks the projection to place tracks
    without following the directions in which timbre varies most; no instrument label is needed.
    """

    def __init__(self, descriptors: np.ndarray, weight: float):
        super().__init__()
        self.weight = weight
        self.register_buffer("descriptors", torch.as_tensor(descriptors, dtype=torch.float32))

    @classmethod
    def from_pooled(cls, pooled: np.ndarray, weight: float, k: int = 16) -> TimbreDecorrelation:
        mask = timbre_channel_mask(pooled.shape[1]).numpy()
        mean, std, axes = timbre_components(pooled, mask, k)
        return cls(((pooled[:, mask] - mean) / std) @ axes.T, weight)

    def forward(self, embeddings: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        if self.weight <= 0 or len(indices) < 3:
            return embeddings.new_zeros(())
        z = _standardise(embeddings)
        t = _standardise(self.descriptors[torch.as_tensor(indices)])
        correlation = z.T @ t / len(indices)  # [embed_dim, k]
        return self.weight * correlation.pow(2).sum() / t.shape[1]


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / (x.std(0) + 1e-6)
