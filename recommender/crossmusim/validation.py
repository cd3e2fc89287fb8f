"""How a training run scores itself on the validation tracks, to choose its best step.

The loop only calls ``validator(model) -> float`` (higher is better); building one from the
validation split lives here, so that every caller makes its choices on the same metric.
"""

from __future__ import annotations

from collections.abc import Callable

from .data import TrainingData
from .evaluate import EvalLabels, evaluate_embeddings
from .inference import audio_inputs, embed_audio
from .towers import CrossMuSimModel

Validator = Callable[[CrossMuSimModel], float]


def retrieval_validator(val_data: TrainingData, labels: EvalLabels, metric: str = "xinst_style_p10") -> Validator:
    """A validator scoring a model by a retrieval metric on the validation tracks (higher is better)."""

    def score(model: CrossMuSimModel) -> float:
        embeddings = embed_audio(model, audio_inputs(val_data, model.config.audio.kind))
        return evaluate_embeddings(embeddings, labels)[metric]

    return score
