"""Audio-only embeddings that need no training: the baseline arm and the reference rows.

``baseline_embeddings`` is the baseline arm: the pooled pretrained features as they are
(optionally z-scored with training-set statistics, which only rescales axes). The others
are rows of the evaluation table: chance, mean-pooled log-mel, an untrained small CNN.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

from .augment import crop_logmels
from .logmel import mean_pooled_log_mel
from .scratch_cnn import ScratchCNNConfig, SmallLogMelCNN


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def baseline_embeddings(pooled_features: np.ndarray, mean: np.ndarray | None = None,
                        std: np.ndarray | None = None) -> np.ndarray:
    """Pretrained pooled features as they are, L2-normalised; z-scored first when ``mean``/``std`` are given."""
    x = np.asarray(pooled_features, dtype=np.float32)
    if mean is not None and std is not None:
        x = (x - mean) / np.maximum(std, 1e-6)
    return _l2(x)


def chance_embeddings(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return _l2(np.random.default_rng(seed).normal(size=(n, dim)))


def log_mel_embeddings(logmels: list[np.ndarray]) -> np.ndarray:
    """The average spectrum of each track (centred across tracks so that cosine compares shapes)."""
    x = np.stack([mean_pooled_log_mel(m) for m in logmels])
    return _l2(x - x.mean(0))


@torch.no_grad()
def untrained_cnn_embeddings(logmels: list[np.ndarray], config: ScratchCNNConfig | None = None,
                             seed: int = 0) -> np.ndarray:
    """A randomly initialised small CNN's pooled features, averaged over crop-sized windows."""
    config = config or ScratchCNNConfig(n_mels=logmels[0].shape[0])
    torch.manual_seed(seed)
    cnn = SmallLogMelCNN(config)
    # one pass in train mode sets the batch-norm statistics from the data, as any user of a random CNN would
    sample = crop_logmels(logmels[: min(len(logmels), 64)], config.crop_frames, np.random.default_rng(seed))
    cnn.train()
    for module in cnn.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    cnn(sample)
    cnn.eval()
    rows = []
    frames = config.crop_frames
    for logmel in logmels:
        starts = range(0, max(1, logmel.shape[1] - frames + 1), frames)
        windows = crop_logmels([logmel[:, s: s + frames] for s in starts], frames, None)
        rows.append(F.normalize(cnn(windows), dim=-1).mean(0))
    return _l2(torch.stack(rows).numpy())
