"""A small log-mel CNN audio tower trained from scratch.

The ablation row for "how much does the pretrained backbone bring", and the path for
users without the pretrained weights. Four conv blocks (3x3 conv, batch-norm, ReLU,
2x2 max-pool), then mean ‖ max over time and frequency and a linear layer: a few tens of
thousands of weights, so that it trains on a CPU in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ScratchCNNConfig:
    n_mels: int = 96
    channels: tuple[int, ...] = (8, 16, 32, 64)
    out_dim: int = 128
    crop_frames: int = 188  # about 3 s at hop 256 / 16 kHz, like one musicnn patch


class SmallLogMelCNN(nn.Module):
    """[B, n_mels, T] log-mel -> [B, out_dim]; any T >= 16 frames works (global pooling)."""

    def __init__(self, config: ScratchCNNConfig):
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = [nn.BatchNorm2d(1)]  # learns the input's scale: no dataset statistics needed
        in_ch = 1
        for out_ch in config.channels:
            blocks += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(),
                       nn.MaxPool2d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * in_ch, config.out_dim)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        hidden = self.features(logmel.unsqueeze(1)).flatten(2)
        pooled = torch.cat([hidden.mean(-1), hidden.amax(-1)], dim=-1)
        return self.head(pooled)
