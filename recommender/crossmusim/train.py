"""Training loops for CrossMuSim and for the audio-only reference rows.

One loop, three objectives (``TrainConfig.objective``):

* ``"text"`` — CrossMuSim: audio tower vs. text tower, :class:`~.loss.CrossModalInfoNCE`
  (duplicate captions masked, pairs weighted by mining score);
* ``"simclr"`` — audio only: two augmented views of each track, :class:`~.loss.SimCLRLoss`;
* ``"supervised"`` — audio only with a linear style head (the ceiling reference).

Runs are deterministic for a seed (explicit generators, single-threaded data sampling),
report progress through a callback ``progress(step, total_steps, loss)``, save and resume
checkpoints, and make their choices (best step, early stop) on a *validation* scorer only —
the caller passes ``validator(model) -> float`` built from the validation split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from .augment import (
    AugmentConfig,
    add_feature_noise,
    augment_logmel,
    choose_captions,
    crop_logmels,
    sample_patch_windows,
)
from .evaluate import EvalLabels, evaluate_embeddings
from .features import pad_patches, pool_many, pool_masked
from .loss import CrossModalInfoNCE, SimCLRLoss, duplicate_caption_mask
from .towers import CrossMuSimConfig, CrossMuSimModel, create_model

ProgressCallback = Callable[[int, int, float], None]
Validator = Callable[[CrossMuSimModel], float]


@dataclass
class TrainingData:
    """Training tracks, aligned lists (one entry per track).

    ``patches`` (pretrained tower) or ``logmels`` (scratch tower) carry the audio;
    ``caption_embeddings`` are the frozen MiniLM embeddings of each track's kept
    descriptions with ``caption_weights`` their mining scores; ``labels`` are integer
    classes for the supervised reference. Use :meth:`from_texts` to embed raw texts.
    """

    patches: list[np.ndarray] | None = None
    logmels: list[np.ndarray] | None = None
    caption_embeddings: list[np.ndarray] | None = None
    caption_weights: list[np.ndarray] | None = None
    labels: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        audio = self.patches if self.patches is not None else self.logmels
        return 0 if audio is None else len(audio)

    @classmethod
    def from_texts(cls, captions: Sequence[Sequence[str]], scores: Sequence[Sequence[float]] | None = None,
                   encoder: Callable[[list[str]], np.ndarray] | None = None, **audio) -> TrainingData:
        """Embed every distinct caption once with the frozen text encoder (MiniLM by default)."""
        if encoder is None:
            from .text_encoder import encode_texts as encoder
        distinct = sorted({text for texts in captions for text in texts})
        vectors = encoder(distinct) if distinct else np.zeros((0, 384), np.float32)
        row = {text: i for i, text in enumerate(distinct)}
        embeddings = [vectors[[row[t] for t in texts]] if texts else vectors[:0] for texts in captions]
        weights = [np.asarray(s if s is not None else np.ones(len(t)), dtype=np.float32) for t, s in
                   zip(captions, scores or [None] * len(captions), strict=True)]
        return cls(caption_embeddings=embeddings, caption_weights=weights, **audio)


@dataclass
class TrainConfig:
    objective: str = "text"  # "text" (CrossMuSim), "simclr", "supervised"
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
    simclr_temperature: float = 0.1
    eval_every: int = 50
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    checkpoint_path: str | None = None
    checkpoint_every: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: CrossMuSimModel
    config: TrainConfig
    steps_done: int
    losses: list[float]
    best_step: int
    best_val_score: float | None
    val_history: list[tuple[int, float]]
    train_seconds: float
    resumed_from_step: int = 0
    classifier: nn.Module | None = None  # the style head of the supervised reference


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _Batcher:
    """Shuffled epochs of track indices, from its own numpy generator."""

    def __init__(self, indices: np.ndarray, batch_size: int, rng: np.random.Generator):
        self.indices, self.batch_size, self.rng = indices, min(batch_size, len(indices)), rng
        self.queue: list[int] = []

    def next(self) -> np.ndarray:
        if len(self.queue) < self.batch_size:
            self.queue += list(self.rng.permutation(self.indices))
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
        return np.array(batch)


def _prepare_model(data: TrainingData, config: TrainConfig) -> CrossMuSimModel:
    model_config = config.model
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
    """Weights + model config (enough for :func:`load_model`), and optimizer/step/RNG state for resuming."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_config": model.config.to_dict(), "state_dict": model.state_dict(), "step": step,
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "train_config": train_config.to_dict() if train_config is not None else None, **(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_model(path: Path | str) -> CrossMuSimModel:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint` (eval mode)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = create_model(CrossMuSimConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def _audio_views(data, model, config, batch, padded, mask, gen, rng):
    """One augmented audio input for the tracks of ``batch`` (pooled features or log-mel crops)."""
    aug = config.augment
    if config.model.audio.kind == "pretrained":
        window = sample_patch_windows(mask[batch], aug.patch_window_min_frac, gen)
        pooled = pool_masked(padded[batch], window)
        return add_feature_noise(pooled, model.audio.input_std, aug.feature_noise, gen)
    crops = crop_logmels([data.logmels[i] for i in batch], config.model.audio.scratch.crop_frames, rng)
    return augment_logmel(crops, aug, gen)


def train_crossmusim(data: TrainingData, config: TrainConfig, progress: ProgressCallback | None = None,
                     validator: Validator | None = None, resume: bool = True) -> TrainResult:
    """Train a model on ``data`` with ``config.objective``; returns the best-on-validation model."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = _prepare_model(data, config)
    classifier = None
    if config.objective == "supervised":
        if data.labels is None:
            raise ValueError("the supervised objective needs TrainingData.labels")
        classifier = nn.Linear(config.model.embed_dim, int(np.max(data.labels)) + 1)
    params = list(model.parameters()) + (list(classifier.parameters()) if classifier else [])
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)

    if config.objective == "text":
        if data.caption_embeddings is None:
            raise ValueError("the text objective needs TrainingData.caption_embeddings")
        usable = np.array([i for i, e in enumerate(data.caption_embeddings) if len(e)])
        if len(usable) < 2:
            raise ValueError("fewer than two training tracks have a kept description")
        flat = torch.as_tensor(np.concatenate([data.caption_embeddings[i] for i in usable]))
        offsets = np.zeros(len(data), dtype=np.int64)
        offsets[usable] = np.concatenate([[0], np.cumsum([len(data.caption_embeddings[i]) for i in usable])[:-1]])
    else:
        usable = np.arange(len(data))
    padded, mask = pad_patches(data.patches) if config.model.audio.kind == "pretrained" else (None, None)
    batcher = _Batcher(usable, config.batch_size, rng)
    text_loss, simclr_loss = CrossModalInfoNCE(config.duplicates), SimCLRLoss(config.simclr_temperature)

    start_step, losses, val_history = 0, [], []
    best_score, best_step, best_state, stale = None, 0, None, 0
    checkpoint = Path(config.checkpoint_path) if config.checkpoint_path else None
    if resume and checkpoint is not None and checkpoint.exists():
        payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        if classifier is not None and payload.get("classifier") is not None:
            classifier.load_state_dict(payload["classifier"])
        start_step, losses = payload["step"], payload.get("losses", [])
        gen.set_state(payload["torch_rng"])
        torch.set_rng_state(payload["global_torch_rng"])  # dropout draws from the global generator
        rng.bit_generator.state = payload["numpy_rng"]
        batcher.queue = payload.get("batch_queue", [])
        best_score, best_step, val_history = payload.get("best_score"), payload.get("best_step", 0), \
            payload.get("val_history", [])
        best_state = payload.get("best_state")

    def snapshot(step: int) -> None:
        save_checkpoint(checkpoint, model, optimizer=optimizer, step=step, train_config=config, extra={
            "losses": losses, "torch_rng": gen.get_state(), "global_torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
            "batch_queue": batcher.queue, "best_score": best_score, "best_step": best_step,
            "val_history": val_history, "best_state": best_state,
            "classifier": classifier.state_dict() if classifier is not None else None})

    began = time.perf_counter()
    step = start_step
    for step in range(start_step, config.steps):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.steps, config.warmup_steps)
        batch = batcher.next()
        audio = _audio_views(data, model, config, batch, padded, mask, gen, rng)
        if config.objective == "text":
            chosen = choose_captions([data.caption_weights[i] for i in batch], rng, config.augment.sample_by_score)
            raw_text = flat[offsets[batch] + chosen]
            text_in = add_feature_noise(raw_text, model.text.input_std, config.augment.text_noise, gen)
            out = model(audio, text_in)
            weights = None
            if config.use_score_weights:
                w = torch.as_tensor(np.array([data.caption_weights[i][c] for i, c in zip(batch, chosen, strict=True)]))
                weights = w if w.sum() > 0 else None
            loss = text_loss(out["audio_features"], out["text_features"], out["logit_scale"],
                             duplicate_mask=duplicate_caption_mask(raw_text, config.duplicate_threshold),
                             weights=weights)
        elif config.objective == "simclr":
            second = _audio_views(data, model, config, batch, padded, mask, gen, rng)
            loss = simclr_loss(model.encode_audio(audio, normalize=False), model.encode_audio(second, normalize=False))
        elif config.objective == "supervised":
            logits = classifier(model.encode_audio(audio, normalize=False))
            loss = F.cross_entropy(logits, torch.as_tensor(data.labels[batch], dtype=torch.long))
        else:
            raise ValueError(f"unknown objective {config.objective!r}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps, losses[-1])

        done = step + 1
        if validator is not None and (done % config.eval_every == 0 or done == config.steps):
            model.eval()
            score = float(validator(model))
            val_history.append((done, score))
            if best_score is None or score > best_score:
                best_score, best_step, stale = score, done, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
        if checkpoint is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
            snapshot(done)
        if config.patience and stale >= config.patience:
            break
    steps_done = step + 1 if config.steps > start_step else start_step
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_step = steps_done
    if checkpoint is not None:
        snapshot(steps_done)
    return TrainResult(model=model.eval(), config=config, steps_done=steps_done, losses=losses, best_step=best_step,
                       best_val_score=best_score, val_history=val_history,
                       train_seconds=time.perf_counter() - began, resumed_from_step=start_step,
                       classifier=classifier)


@torch.no_grad()
def embed_audio(model: CrossMuSimModel, audio, normalize: bool = True, batch_size: int = 256) -> np.ndarray:
    """Embed tracks: pooled features [N, input_dim] (pretrained tower) or a list of log-mels (scratch tower).

    A scratch-tower track is cut into crop-sized windows whose embeddings are averaged, so that
    long tracks are seen as the network saw them in training.
    """
    model.eval()
    if model.config.audio.kind == "pretrained":
        x = torch.as_tensor(np.asarray(audio), dtype=torch.float32)
        out = torch.cat([model.encode_audio(x[i: i + batch_size], normalize=False)
                         for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, model.config.embed_dim)
    else:
        frames = model.config.audio.scratch.crop_frames
        rows = []
        for logmel in audio:
            starts = range(0, max(1, logmel.shape[1] - frames + 1), frames)
            windows = crop_logmels([logmel[:, s: s + frames] for s in starts], frames, None)
            rows.append(F.normalize(model.encode_audio(windows, normalize=False), dim=-1).mean(0))
        out = torch.stack(rows) if rows else torch.zeros(0, model.config.embed_dim)
    return (F.normalize(out, dim=-1) if normalize else out).numpy()


@torch.no_grad()
def embed_text(model: CrossMuSimModel, texts, normalize: bool = True) -> np.ndarray:
    """Texts (strings, embedded with the frozen MiniLM) or precomputed [N, 384] embeddings -> shared space."""
    if len(texts) and isinstance(texts[0], str):
        from .text_encoder import encode_texts

        texts = encode_texts(list(texts))
    model.eval()
    x = torch.as_tensor(np.asarray(texts), dtype=torch.float32)
    return model.encode_text(x, normalize=normalize).numpy()


def audio_inputs(data: TrainingData, kind: str):
    """What :func:`embed_audio` takes for ``data``: pooled features or the list of log-mels."""
    return pool_many(data.patches) if kind == "pretrained" else data.logmels


def retrieval_validator(val_data: TrainingData, labels: EvalLabels, metric: str = "xinst_style_p10") -> Validator:
    """A validator scoring a model by a retrieval metric on the validation tracks (higher is better)."""

    def score(model: CrossMuSimModel) -> float:
        embeddings = embed_audio(model, audio_inputs(val_data, model.config.audio.kind))
        return evaluate_embeddings(embeddings, labels)[metric]

    return score
