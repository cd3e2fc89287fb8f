"""Creating, saving and loading a CrossMuSim model: the one home of the checkpoint format.

Training builds its model here (fitted to its data's input sizes and statistics) and saves
it here; the indexer and the search endpoint load it here, so that they never import the
training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import TrainingData
from .features import pool_many
from .towers import CrossMuSimConfig, CrossMuSimModel, create_model


def create_model_for_data(model_config: CrossMuSimConfig, data: TrainingData) -> CrossMuSimModel:
    """A new model whose input sizes and input standardisation come from the training data.

    The pretrained tower takes its input size and feature mean/std from the pooled patches,
    the scratch tower its mel-band count from the log-mels, the text tower its mean/std from
    the caption embeddings: the statistics live in the model's buffers, so a checkpoint
    embeds new tracks on its own. ``model_config``'s data-dependent fields (``input_dim``,
    ``n_mels``) are filled in place, so the run's config records what was built.
    """
    if model_config.audio.kind == "pretrained":
        if data.patches is None:
            raise ValueError("the pretrained audio tower needs TrainingData.patches")
        pooled = torch.as_tensor(pool_many(data.patches))
        model_config.audio.input_dim = pooled.shape[1]
        model = create_model(model_config)
        model.audio.set_input_stats(pooled.mean(0), pooled.std(0))
    else:
        if data.logmels is None:
            raise ValueError("the scratch audio tower needs TrainingData.logmels")
        model_config.audio.scratch.n_mels = data.logmels[0].shape[0]
        model = create_model(model_config)
    if data.caption_embeddings is not None:
        texts = [e for e in data.caption_embeddings if len(e)]
        if texts:
            stacked = torch.as_tensor(np.concatenate(texts))
            model.text.set_input_stats(stacked.mean(0), stacked.std(0))
    return model


def save_checkpoint(path: Path | str, model: CrossMuSimModel, *, optimizer=None, step: int = 0,
                    train_config: TrainConfig | None = None, extra: dict | None = None) -> Path:
    """Weights + model config (enough for :func:`load_model`), and optimizer/step/RNG state for resuming.

    Written to a temporary file and renamed, so a crash mid-write leaves the previous checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_config": model.config.to_dict(), "state_dict": model.state_dict(), "step": step,
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "train_config": train_config.to_dict() if train_config is not None else None, **(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: Path | str) -> dict:
    """The whole payload written by :func:`save_checkpoint` (weights, configs, resume state), on the CPU."""
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def load_model(path: Path | str) -> CrossMuSimModel:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint` (eval mode)."""
    payload = read_checkpoint(path)
    model = create_model(CrossMuSimConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
