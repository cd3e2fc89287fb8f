"""The configuration of a training run, apart from the loop that reads it.

The platform's training service, the bench and the checkpoints all speak this one
dataclass: the service trains with its defaults (plus a command's overrides), the bench
starts from the service's config and names what it changes, and a checkpoint stores it
beside the weights. Keeping it out of ``train`` lets them do so without importing the
training loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .augment import AugmentConfig
from .towers import CrossMuSimConfig


@dataclass
class TrainConfig:
    """One run: objective, model, augmentation, optimisation, validation and checkpointing.

    ``objective``: ``"text"`` (CrossMuSim), ``"simclr"`` or ``"supervised"`` (the audio-only
    reference rows; see :mod:`.objectives`).
    """

    objective: str = "text"
    model: CrossMuSimConfig = field(default_factory=CrossMuSimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    duplicate_threshold: float = 0.95  # captions this similar (cosine of MiniLM embeddings) are not negatives
    duplicates: str = "mask"  # "mask": not negatives; "positive": further positives (see CrossModalInfoNCE)
    use_score_weights: bool = True
    timbre_decorrelation: float = 0.0  # weight of timbre.TimbreDecorrelation in the text objective (0 = off)
    timbre_components: int = 16  # principal components of the timbral channels it decorrelates from
    simclr_temperature: float = 0.1
    eval_every: int = 50
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    checkpoint_path: str | None = None
    checkpoint_every: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
