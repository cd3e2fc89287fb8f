"""The musicnn tagging network (Pons & Serra 2019) in torch, loadable from the original TF weights.

A line-by-line port of ``build_musicnn`` in musicnn's ``models.py`` (inference only).
TensorFlow works in NHWC with the mel patch as ``[batch, time, freq, 1]``; here the
same computation runs as NCHW ``[batch, 1, time, freq]`` for the front-end and as 1-D
convolutions over time ``[batch, channels, time]`` for the mid-end (the TF mid-end
convolves a kernel spanning all channels, which is exactly a Conv1d). Where it matters:

- front-end: batch-norm of the input (one scalar channel), then five branches:
  timbral convs with kernels 7x38 and 7x67 (time x freq, 204 filters each) on the input
  zero-padded by 3 frames in time, temporal convs with kernels 128x1, 64x1, 32x1 (51
  filters each) with TF 'same' padding (for an even kernel k TF pads (k-1)//2 before and
  k//2 after). Each: conv + bias -> ReLU -> batch-norm -> max over frequency.
- mid-end: three 7-frame convs (64 filters, 'same' by padding 3) with ReLU then
  batch-norm, the 2nd and 3rd with residual connections; front-end and mid-end maps are
  concatenated (561 + 3 x 64 = 753 channels).
- back-end: max and mean over time, interleaved per channel as TF flattens the
  ``[753, 2]`` (max, mean) tensor -> batch-norm -> dense 200 + ReLU -> batch-norm (the
  "penultimate" features) -> dense to the tags; sigmoid gives the taggram.
- batch-norm uses the stored moving averages and TF's epsilon 1e-3. Dropout is inactive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from torch import nn

TF_BATCH_NORM_EPSILON = 1e-3
FRONTEND_TIMBRAL_FILTERS = 204  # int(1.6 * 128)
FRONTEND_TEMPORAL_FILTERS = 51  # int(1.6 * 32)
TIMBRAL_KERNELS = (38, 67)  # int(0.4 * 96), int(0.7 * 96) mel bands, 7 frames long
TEMPORAL_KERNELS = (128, 64, 32)  # frames
FRONTEND_CHANNELS = 2 * FRONTEND_TIMBRAL_FILTERS + 3 * FRONTEND_TEMPORAL_FILTERS  # 561
MIDEND_FILTERS = 64
POOL_CHANNELS = FRONTEND_CHANNELS + 3 * MIDEND_FILTERS  # 753
BACKEND_UNITS = 200


class FrozenBatchNorm(nn.Module):
    """Inference-mode batch-norm over dim 1 with TF's epsilon: ``(x - mean) / sqrt(var + eps) * gamma + beta``."""

    def __init__(self, channels: int, eps: float = TF_BATCH_NORM_EPSILON):
        super().__init__()
        self.eps = eps
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel affine map this batch-norm applies: ``x * scale + shift``."""
        scale = self.gamma * torch.rsqrt(self.moving_variance + self.eps)
        return scale, self.beta - self.moving_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(view) + shift.view(view)


def conv_relu_bn_max_over_freq(x: torch.Tensor, conv: nn.Conv2d, bn: FrozenBatchNorm) -> torch.Tensor:
    """``max_freq(bn(relu(conv(x))))`` -> ``[B, C, T]``, with bias, ReLU and batch-norm applied after the max.

    Equal to the original order because all three are monotonic per channel: the bias and
    the ReLU keep the maximum where it is, and the batch-norm's affine map keeps it too
    when its scale is positive, or turns the minimum into the maximum when it is negative.
    The minimum is taken as the maximum of the negated conv (negating the kernel is exact),
    so one max over the large ``[B, C, T, F]`` conv output replaces three passes over it.
    """
    scale, shift = bn.scale_shift()
    sign = torch.where(scale >= 0, 1.0, -1.0).to(scale.dtype)
    extreme = F.conv2d(x, conv.weight * sign.view(-1, 1, 1, 1)).amax(dim=3) * sign.view(1, -1, 1)
    return F.relu(extreme + conv.bias.view(1, -1, 1)) * scale.view(1, -1, 1) + shift.view(1, -1, 1)


@dataclass
class MusicnnOutputs:
    """Every representation musicnn's extractor exposes, for a batch of B patches.

    Per-patch shapes: ``taggram`` [B, n_tags] (sigmoid), ``logits`` [B, n_tags],
    ``penultimate`` [B, 200], ``mean_pool`` / ``max_pool`` [B, 753], ``timbral``
    [B, T, 408], ``temporal`` [B, T, 153], ``cnn1``/``cnn2``/``cnn3`` [B, T, 64] (T = 187
    frames per patch, time-major like the original).
    """

    taggram: torch.Tensor
    logits: torch.Tensor
    penultimate: torch.Tensor
    mean_pool: torch.Tensor
    max_pool: torch.Tensor
    timbral: torch.Tensor
    temporal: torch.Tensor
    cnn1: torch.Tensor
    cnn2: torch.Tensor
    cnn3: torch.Tensor


class Musicnn(nn.Module):
    """musicnn for ``[B, frames, 96]`` log-mel patches (``MTT_musicnn`` / ``MSD_musicnn``: 50 tags)."""

    def __init__(self, n_tags: int = 50, n_mels: int = 96):
        super().__init__()
        self.n_mels = n_mels
        self.input_bn = FrozenBatchNorm(1)
        self.timbral_convs = nn.ModuleList(
            nn.Conv2d(1, FRONTEND_TIMBRAL_FILTERS, kernel_size=(7, width)) for width in TIMBRAL_KERNELS
        )
        self.timbral_bns = nn.ModuleList(FrozenBatchNorm(FRONTEND_TIMBRAL_FILTERS) for _ in TIMBRAL_KERNELS)
        self.temporal_convs = nn.ModuleList(
            nn.Conv2d(1, FRONTEND_TEMPORAL_FILTERS, kernel_size=(length, 1)) for length in TEMPORAL_KERNELS
        )
        self.temporal_bns = nn.ModuleList(FrozenBatchNorm(FRONTEND_TEMPORAL_FILTERS) for _ in TEMPORAL_KERNELS)
        self.midend_convs = nn.ModuleList(
            nn.Conv1d(channels, MIDEND_FILTERS, kernel_size=7)
            for channels in (FRONTEND_CHANNELS, MIDEND_FILTERS, MIDEND_FILTERS)
        )
        self.midend_bns = nn.ModuleList(FrozenBatchNorm(MIDEND_FILTERS) for _ in range(3))
        self.pool_bn = FrozenBatchNorm(2 * POOL_CHANNELS)
        self.dense = nn.Linear(2 * POOL_CHANNELS, BACKEND_UNITS)
        self.dense_bn = FrozenBatchNorm(BACKEND_UNITS)
        self.output = nn.Linear(BACKEND_UNITS, n_tags)

    def frontend(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, 96]`` -> (timbral ``[B, 408, T]``, temporal ``[B, 153, T]``)."""
        x = self.input_bn(patches.unsqueeze(1))  # [B, 1, T, F]
        padded = F.pad(x, (0, 0, 3, 3))
        timbral = [
            conv_relu_bn_max_over_freq(padded, conv, bn)
            for conv, bn in zip(self.timbral_convs, self.timbral_bns, strict=True)
        ]
        temporal = []
        for conv, bn, length in zip(self.temporal_convs, self.temporal_bns, TEMPORAL_KERNELS, strict=True):
            same = F.pad(x, (0, 0, (length - 1) // 2, length // 2))
            temporal.append(conv_relu_bn_max_over_freq(same, conv, bn))
        return torch.cat(timbral, dim=1), torch.cat(temporal, dim=1)

    def midend(self, frontend: torch.Tensor) -> list[torch.Tensor]:
        """``[B, 561, T]`` -> the three mid-end maps ``[B, 64, T]`` (the 2nd and 3rd with residuals)."""
        maps: list[torch.Tensor] = []
        x = frontend
        for index, (conv, bn) in enumerate(zip(self.midend_convs, self.midend_bns, strict=True)):
            y = bn(F.relu(conv(F.pad(x, (3, 3)))))
            if index > 0:
                y = y + x
            maps.append(y)
            x = y
        return maps

    def forward(self, patches: torch.Tensor) -> MusicnnOutputs:
        if patches.dim() != 3 or patches.shape[2] != self.n_mels:
            raise ValueError(f"expected [batch, frames, {self.n_mels}] patches, got {tuple(patches.shape)}")
        timbral, temporal = self.frontend(patches)
        cnn1, cnn2, cnn3 = self.midend(torch.cat([timbral, temporal], dim=1))
        features = torch.cat([timbral, temporal, cnn1, cnn2, cnn3], dim=1)  # [B, 753, T]
        max_pool = features.amax(dim=2)
        mean_pool = features.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF order: (c0 max, c0 mean, c1 max, ...)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        logits = self.output(penultimate)
        return MusicnnOutputs(
            taggram=torch.sigmoid(logits),
            logits=logits,
            penultimate=penultimate,
            mean_pool=mean_pool,
            max_pool=max_pool,
            timbral=timbral.transpose(1, 2),
            temporal=temporal.transpose(1, 2),
            cnn1=cnn1.transpose(1, 2),
            cnn2=cnn2.transpose(1, 2),
            cnn3=cnn3.transpose(1, 2),
        )


# TF variable scope of each layer, in the order build_musicnn creates them.
_TF_BATCH_NORMS = {
    "input_bn": "batch_normalization",
    "timbral_bns.0": "batch_normalization_1",
    "timbral_bns.1": "batch_normalization_2",
    "temporal_bns.0": "batch_normalization_3",
    "temporal_bns.1": "batch_normalization_4",
    "temporal_bns.2": "batch_normalization_5",
    "midend_bns.0": "batch_normalization_6",
    "midend_bns.1": "batch_normalization_7",
    "midend_bns.2": "batch_normalization_8",
    "pool_bn": "batch_normalization_9",
    "dense_bn": "batch_normalization_10",
}
_TF_CONV2D = {
    "timbral_convs.0": "conv2d",
    "timbral_convs.1": "conv2d_1",
    "temporal_convs.0": "conv2d_2",
    "temporal_convs.1": "conv2d_3",
    "temporal_convs.2": "conv2d_4",
}
_TF_CONV1D = {"midend_convs.0": "conv2d_5", "midend_convs.1": "conv2d_6", "midend_convs.2": "conv2d_7"}
_TF_DENSE = {"dense": "dense", "output": "dense_1"}


def state_dict_from_tf(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map musicnn's TF variables (name -> array) onto :class:`Musicnn`'s state dict.

    TF conv kernels are ``[kh, kw, in, out]`` (torch: ``[out, in, kh, kw]``); the mid-end
    kernels ``[7, C, 1, 64]`` slide over time only, so they become Conv1d ``[64, C, 7]``;
    dense kernels are ``[in, out]`` (torch: ``[out, in]``).
    """

    def get(name: str) -> torch.Tensor:
        if name not in variables:
            raise KeyError(f"checkpoint lacks variable {name!r}: not a musicnn checkpoint?")
        return torch.from_numpy(np.ascontiguousarray(variables[name], dtype=np.float32))

    state: dict[str, torch.Tensor] = {}
    for module, scope in _TF_BATCH_NORMS.items():
        for field in ("gamma", "beta", "moving_mean", "moving_variance"):
            state[f"{module}.{field}"] = get(f"{scope}/{field}")
    for module, scope in _TF_CONV2D.items():
        state[f"{module}.weight"] = get(f"{scope}/kernel").permute(3, 2, 0, 1).contiguous()
        state[f"{module}.bias"] = get(f"{scope}/bias")
    for module, scope in _TF_CONV1D.items():
        state[f"{module}.weight"] = get(f"{scope}/kernel")[:, :, 0, :].permute(2, 1, 0).contiguous()
        state[f"{module}.bias"] = get(f"{scope}/bias")
    for module, scope in _TF_DENSE.items():
        state[f"{module}.weight"] = get(f"{scope}/kernel").t().contiguous()
        state[f"{module}.bias"] = get(f"{scope}/bias")
    return state
