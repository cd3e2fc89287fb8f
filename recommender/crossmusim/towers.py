"""The two towers of CrossMuSim and the shared temperature, in the manner of open_clip.

* audio tower, ``kind="pretrained"``: a two-layer projection MLP over pooled pretrained
  (musicnn) patch features; the input is standardised with statistics of the training set
  kept as buffers, so a checkpoint embeds new tracks on its own.
* audio tower, ``kind="scratch_cnn"``: :class:`~.scratch_cnn.SmallLogMelCNN` on log-mel,
  followed by the same kind of two-layer projection.
* text tower: a two-layer projection over frozen all-MiniLM-L6-v2 sentence embeddings (384-d).

Both towers answer ``encode_*(x, normalize=True)``; ``logit_scale`` (log of the inverse
temperature, initialised to log(1/0.07)) lives in the model and is passed to the loss.
Build models with :func:`create_model` from a :class:`CrossMuSimConfig`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from .scratch_cnn import ScratchCNNConfig, SmallLogMelCNN

TEXT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2 sentence embeddings


@dataclass
class AudioTowerConfig:
    kind: str = "pretrained"  # "pretrained" (pooled backbone features) or "scratch_cnn" (log-mel)
    input_dim: int = 0  # pooled feature size (2 x backbone D) for "pretrained"; set from the data
    hidden_dim: int = 512
    input_dropout: float = 0.1  # feature dropout on the standardised input (augmentation)
    dropout: float = 0.1
    # standardised inputs clipped to +/- this (0 = off): an unfamiliar timbre's outlying channels
    # cannot then dominate the projection
    input_clip: float = 0.0
    scratch: ScratchCNNConfig = field(default_factory=ScratchCNNConfig)


@dataclass
class TextTowerConfig:
    input_dim: int = TEXT_EMBEDDING_DIM
    hidden_dim: int = 512
    input_dropout: float = 0.0
    dropout: float = 0.1


@dataclass
class CrossMuSimConfig:
    embed_dim: int = 128
    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    learn_logit_scale: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CrossMuSimConfig:
        audio = dict(data.get("audio", {}))
        scratch = dict(audio.pop("scratch", {}) or {})
        if "channels" in scratch:
            scratch["channels"] = tuple(scratch["channels"])
        return cls(
            embed_dim=data.get("embed_dim", 128),
            audio=AudioTowerConfig(**audio, scratch=ScratchCNNConfig(**scratch)),
            text=TextTowerConfig(**data.get("text", {})),
            init_logit_scale=data.get("init_logit_scale", math.log(1 / 0.07)),
            learn_logit_scale=data.get("learn_logit_scale", True),
        )


class ProjectionTower(nn.Module):
    """Standardise -> dropout -> Linear -> GELU -> dropout -> Linear: a two-layer projection."""

    def __init__(self, input_dim: int, hidden_dim: int, out_dim: int, input_dropout: float = 0.0,
                 dropout: float = 0.1, input_clip: float = 0.0):
        super().__init__()
        self.input_clip = input_clip
        if input_dim <= 0:
            raise ValueError("input_dim must be set (the pooled feature size) before building the tower")
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))
        self.input_dropout = nn.Dropout(input_dropout)
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x)
        if self.input_clip > 0:
            x = x.clamp(-self.input_clip, self.input_clip)
        return self.net(self.input_dropout(x))


class ScratchAudioTower(nn.Module):
    """Small log-mel CNN followed by a two-layer projection into the shared space."""

    def __init__(self, config: AudioTowerConfig, out_dim: int):
        super().__init__()
        self.cnn = SmallLogMelCNN(config.scratch)
        self.proj = nn.Sequential(
            nn.Linear(config.scratch.out_dim, config.hidden_dim), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, out_dim),
        )

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.proj(self.cnn(logmel))


def _build_audio_tower(config: AudioTowerConfig, embed_dim: int) -> nn.Module:
    if config.kind == "pretrained":
        return ProjectionTower(config.input_dim, config.hidden_dim, embed_dim, config.input_dropout, config.dropout,
                               config.input_clip)
    if config.kind == "scratch_cnn":
        return ScratchAudioTower(config, embed_dim)
    raise ValueError(f"unknown audio tower kind {config.kind!r} (expected 'pretrained' or 'scratch_cnn')")


def _build_text_tower(config: TextTowerConfig, embed_dim: int) -> ProjectionTower:
    return ProjectionTower(config.input_dim, config.hidden_dim, embed_dim, config.input_dropout, config.dropout)


class CrossMuSimModel(nn.Module):
    def __init__(self, config: CrossMuSimConfig):
        super().__init__()
        self.config = config
        self.audio = _build_audio_tower(config.audio, config.embed_dim)
        self.text = _build_text_tower(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(
            torch.tensor(float(config.init_logit_scale)), requires_grad=config.learn_logit_scale
        )

    def encode_audio(self, audio: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Pooled backbone features [B, input_dim] (pretrained) or log-mel [B, n_mels, T] (scratch)."""
        features = self.audio(audio)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text_embeddings: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Frozen sentence embeddings [B, 384] -> shared space."""
        features = self.text(text_embeddings)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, audio: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict:
        return {
            "audio_features": self.encode_audio(audio) if audio is not None else None,
            "text_features": self.encode_text(text) if text is not None else None,
            "logit_scale": self.logit_scale.exp(),
        }


def create_model(config: CrossMuSimConfig | None = None, **overrides) -> CrossMuSimModel:
    """Public constructor; ``overrides`` set top-level config fields (e.g. ``embed_dim=64``)."""
    config = config or CrossMuSimConfig()
    for key, value in overrides.items():
        setattr(config, key, value)
    return CrossMuSimModel(config)
