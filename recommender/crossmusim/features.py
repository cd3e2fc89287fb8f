"""Pretrained audio features: pooling per-patch features into model inputs.

The backbone (musicnn) gives one vector per 3-s patch. A track is represented by the
mean and the max over its patches (mean ‖ max): the mean says what the track is like on
average, the max keeps short salient events. Training pools a *different subset* of the
patches at each step (online augmentation), so the cache keeps every patch, not only the
pooled vector.

The per-patch features themselves are cached by the Django side, one ``.npy`` per audio
checksum and backbone (``recommender.services.embeddings.FeatureCache``), so that a rebuilt
database finds them again; this module only turns them into model inputs.
"""

from __future__ import annotations

import numpy as np
import torch


def pool_patches(patches: np.ndarray) -> np.ndarray:
    """[n_patches, D] -> [2D] float32: mean over patches ‖ max over patches."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 2 or patches.shape[0] == 0:
        raise ValueError(f"expected a non-empty [n_patches, D] array, got shape {patches.shape}")
    return np.concatenate([patches.mean(axis=0), patches.max(axis=0)]).astype(np.float32)


def pool_many(patch_list: list[np.ndarray]) -> np.ndarray:
    """Pool every track: list of [n_i, D] -> [N, 2D]."""
    return np.stack([pool_patches(p) for p in patch_list]) if patch_list else np.zeros((0, 0), np.float32)


def pad_patches(patch_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged per-track patches into a padded tensor [N, P, D] and a validity mask [N, P]."""
    n_max = max(p.shape[0] for p in patch_list)
    dim = patch_list[0].shape[1]
    padded = torch.zeros(len(patch_list), n_max, dim)
    mask = torch.zeros(len(patch_list), n_max, dtype=torch.bool)
    for i, patches in enumerate(patch_list):
        padded[i, : patches.shape[0]] = torch.as_tensor(patches, dtype=torch.float32)
        mask[i, : patches.shape[0]] = True
    return padded, mask


def pool_masked(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`pool_patches` over a padded batch: [B, P, D], [B, P] -> [B, 2D]."""
    weights = mask.unsqueeze(-1).to(padded.dtype)
    mean = (padded * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    maximum = padded.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    return torch.cat([mean, maximum], dim=-1)
