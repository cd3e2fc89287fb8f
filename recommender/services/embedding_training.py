"""Training runs of the two arms from the database: load splits, features and kept descriptions,
call the CrossMuSim core, register the result as a new EmbeddingModel version with its metrics.

Model choices (best step) are made on the validation part only; the test part is used once,
at the end, for the metrics stored with the model.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import transaction

from recommender.crossmusim.evaluate import EvalLabels, evaluate_embeddings
from recommender.crossmusim.features import pool_many
from recommender.crossmusim.textprep import DROPPED_PERSPECTIVES, instrument_vocabulary, training_captions
from recommender.models import EmbeddingModel, Track
from recommender.selectors import all_track_labels, kept_descriptions, split_parts, tracks_for_ids
from recommender.services.embeddings import (
    DEFAULT_BACKBONE,
    HNSW_MAX_DIM,
    FeatureExtractionReport,
    Progress,
    cached_features,
    embedding_model_register,
    feature_cache,
    no_progress,
)
from recommender.services.timbre_views import timbre_view_features

if TYPE_CHECKING:  # torch is imported when a run starts, not with Django
    from recommender.crossmusim.config import TrainConfig
    from recommender.crossmusim.data import TrainingData
    from recommender.crossmusim.train import TrainResult
    from recommender.crossmusim.validation import Validator

TRAIN, VAL, TEST = "train", "val", "test"


class TrainingInputError(ValueError):
    """The database does not hold what a training run needs (split, features, descriptions)."""


@dataclass
class SplitTracks:
    """Tracks of one named split that have cached features, grouped by part, features aligned."""

    split: str
    tracks: dict[str, list[Track]]
    patches: dict[str, list[np.ndarray]]
    extraction: FeatureExtractionReport

    def eval_labels(self, part: str) -> EvalLabels:
        rows = [t.labels or {} for t in self.tracks[part]]
        return EvalLabels(
            style=[str(r.get("style", "")) for r in rows],
            ensemble=[str(r.get("ensemble", "")) for r in rows],
            mode=[str(r.get("mode", "")) for r in rows],
            work_id=[str(r.get("work_id", t.pk)) for r, t in zip(rows, self.tracks[part], strict=True)],
        )


def split_tracks_load(
    *, split: str, backbone: str, extractor_factory: Callable[[], object] | None = None,
    progress: Progress = no_progress,
) -> SplitTracks:
    parts = split_parts(split)
    if not parts:
        raise TrainingInputError(f"no dataset split named {split!r}; build the catalog (build_demo_catalog) first")
    tracks = list(tracks_for_ids(sorted(parts)))
    kept, features, report = cached_features(tracks=tracks, cache=feature_cache(backbone),
                                             extractor_factory=extractor_factory, progress=progress)
    grouped: dict[str, list[Track]] = {TRAIN: [], VAL: [], TEST: []}
    patches: dict[str, list[np.ndarray]] = {TRAIN: [], VAL: [], TEST: []}
    for track, feature in zip(kept, features, strict=True):
        grouped[parts[track.pk]].append(track)
        patches[parts[track.pk]].append(feature)
    for part in (TRAIN, TEST):
        if len(grouped[part]) < 2:
            raise TrainingInputError(f"split {split!r} has {len(grouped[part])} {part} tracks with features")
    return SplitTracks(split=split, tracks=grouped, patches=patches, extraction=report)


def _test_metrics(split_tracks: SplitTracks, embeddings: np.ndarray, text_embedder=None) -> dict[str, float]:
    """Retrieval metrics on the test part; text-to-audio recall with each track's first kept description."""
    tracks = split_tracks.tracks[TEST]
    labels = split_tracks.eval_labels(TEST)
    if text_embedder is None:
        return evaluate_embeddings(embeddings, labels)
    descriptions = kept_descriptions()
    queries, targets = [], []
    for index, track in enumerate(tracks):
        if descriptions.get(track.pk):
            queries.append(descriptions[track.pk][0][0])  # as a user would type it: not stripped
            targets.append(index)
    text_vectors = text_embedder(queries) if queries else None
    return evaluate_embeddings(embeddings, labels, text_vectors, targets)


def feature_views(dim: int) -> dict[str, tuple[int, int]]:
    """Column ranges of the per-patch features a baseline may use as they are.

    musicnn's default "pool" layer is ``mean_pool ‖ max_pool`` (753 + 753); either half alone is
    also "the pretrained features as they are", and half the width fits pgvector's HNSW limit.
    """
    from recommender.crossmusim.musicnn import LAYER_DIMS

    views = {"all": (0, dim)}
    if dim == LAYER_DIMS["pool"]:
        half = LAYER_DIMS["mean_pool"]
        views.update({"mean_pool": (0, half), "max_pool": (half, dim)})
    return views


def _view(patches: list[np.ndarray], columns: tuple[int, int]) -> np.ndarray:
    return pool_many([p[:, columns[0]:columns[1]] for p in patches])


def baseline_register(
    *, backbone: str = DEFAULT_BACKBONE, split: str = "default", name: str | None = None,
    max_dim: int = HNSW_MAX_DIM, extractor_factory: Callable[[], object] | None = None,
    progress: Progress = no_progress,
) -> tuple[EmbeddingModel, SplitTracks]:
    """The audio-only arm: the backbone's pooled features (mean ‖ max over patches) as they are.

    Which feature columns (see :func:`feature_views`) and whether to z-score them with training-set
    statistics are chosen on the validation part (cross-instrument style P@10), among the variants
    whose pooled width is at most ``max_dim`` (so that the arm gets an HNSW index); every variant's
    validation score is kept in ``metrics["val_choices"]``.
    """
    from recommender.crossmusim.baselines import baseline_embeddings

    data = split_tracks_load(split=split, backbone=backbone, extractor_factory=extractor_factory, progress=progress)
    views = feature_views(data.patches[TRAIN][0].shape[1])
    stats, width = {}, {}
    for view, (start, stop) in views.items():
        pooled = _view(data.patches[TRAIN], (start, stop))
        stats[view], width[view] = (pooled.mean(0), pooled.std(0)), 2 * (stop - start)
    choices: dict[str, float | None] = {}
    for view, cols in views.items():
        for z in (False, True):
            key = f"{view}{'+z' if z else ''}"
            if len(data.tracks[VAL]) < 2:
                choices[key] = None
                continue
            embedded = baseline_embeddings(_view(data.patches[VAL], cols), *(stats[view] if z else (None, None)))
            choices[key] = evaluate_embeddings(embedded, data.eval_labels(VAL))["xinst_style_p10"]
    candidates = [key for key in choices if width[key.removesuffix("+z")] <= max_dim] or list(choices)
    best = max(candidates, key=lambda k: (choices[k] if choices[k] is not None else -1.0, -len(k)))
    view, standardize = best.removesuffix("+z"), best.endswith("+z")
    columns = views[view]
    mean, std = stats[view] if standardize else (None, None)
    test_vectors = baseline_embeddings(_view(data.patches[TEST], columns), mean, std)
    metrics = {"split": split, "test": _test_metrics(data, test_vectors), "val_choices": choices, "chosen": best,
               "n_tracks": {part: len(rows) for part, rows in data.tracks.items()}}
    stats_path = ""
    if standardize:
        stats_path = Path(settings.MODELS_DIR) / "baseline" / f"{backbone}-{uuid.uuid4().hex[:12]}.npz"
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stats_path, mean=mean, std=std)
    model = embedding_model_register(
        name=name or f"baseline-{backbone}", kind=EmbeddingModel.Kind.BASELINE, dim=test_vectors.shape[1],
        tower=f"{backbone} {view} mean+max" + (" z-scored" if standardize else ""),
        config={"backbone": backbone, "feature_view": view, "feature_columns": list(columns), "pooling": "mean+max",
                "standardize": standardize, "split": split},
        metrics=_jsonable(metrics), checkpoint_path=str(stats_path),
    )
    return model, data


@dataclass
class CrossMuSimRun:
    model: EmbeddingModel
    losses: list[float]
    resumed_from_step: int
    extraction: FeatureExtractionReport
    views: FeatureExtractionReport | None = None  # the timbre views' extraction, when training used them


def run_checkpoint_path(name: str, seed: int, split: str) -> Path:
    """Where a run's resumable training state lives: one file per (name, split, seed)."""
    return Path(settings.MODELS_DIR) / "runs" / f"{name}-{split}-seed{seed}.pt"


def crossmusim_train_config(*, seed: int = 0, steps: int | None = None, overrides: dict | None = None) -> TrainConfig:
    """The configuration the platform trains CrossMuSim with: the core's ``TrainConfig`` defaults, a seed,
    and a command's overrides (``embed_dim`` sets the model's, ``audio_views`` and ``view_probability`` the
    augmentation's timbre views; the rest are ``TrainConfig`` fields).

    bench/retrieval_quality.py starts its CrossMuSim rows from this config, so that the
    README's figures are those of the model the platform trains.
    """
    from recommender.crossmusim.config import TrainConfig

    overrides = dict(overrides or {})
    embed_dim = overrides.pop("embed_dim", None)
    augment = {key: overrides.pop(key) for key in ("audio_views", "view_probability") if key in overrides}
    config = TrainConfig(seed=seed, **overrides)
    if embed_dim:
        config.model.embed_dim = int(embed_dim)
    for key, value in augment.items():
        setattr(config.augment, key, value)
    if steps is not None:
        config.steps = steps
    return config


def crossmusim_fit(data: TrainingData, config: TrainConfig, *, validator: Validator | None = None,
                   on_step: Callable[[int, int, float], None] | None = None, resume: bool = False) -> TrainResult:
    """Run the core's training loop: the one door to it from outside the core.

    :func:`crossmusim_train` trains the platform's model through it, and the bench its rows
    (CrossMuSim and the audio-only references), so both run the same loop the same way.
    """
    from recommender.crossmusim.train import train_crossmusim

    return train_crossmusim(data, config, progress=on_step, validator=validator, resume=resume)


# The text a CrossMuSim run may train on, by description source: the platform's own writers and shipped text
# ("templates": metadata templates + document text + web pages), the LLM's, or both. "auto" trains one model per
# mix that covers enough of the train part and keeps the one with the best validation score.
TEXT_MIXES: dict[str, tuple[str, ...] | None] = {
    "templates": ("metadata", "document", "web"),
    "llm": ("llm",),
    "both": None,
}
AUTO_MIX = "auto"
MIN_MIX_COVERAGE = 0.5  # a mix is a candidate when this share of the train tracks has kept text in it


def _captions(tracks: Sequence[Track], descriptions: dict, instrument_words: set[str]):
    # E2's caption choices (made on validation): no instrumentation captions, instrument names cut.
    chosen = [training_captions(descriptions.get(t.pk, []), instrument_words) for t in tracks]
    return [texts for texts, _ in chosen], [weights for _, weights in chosen]


def text_mix_candidates(tracks: Sequence[Track], text_mix: str = AUTO_MIX) -> dict[str, dict]:
    """mix -> kept descriptions (track id -> rows) for the mixes a run considers, with their coverage."""
    if text_mix != AUTO_MIX and text_mix not in TEXT_MIXES:
        raise ValueError(f"unknown text mix {text_mix!r}; choose from {', '.join([AUTO_MIX, *TEXT_MIXES])}")
    names = list(TEXT_MIXES) if text_mix == AUTO_MIX else [text_mix]
    out = {}
    coverage = {}
    for name in names:
        descriptions = kept_descriptions(TEXT_MIXES[name])
        covered = sum(1 for t in tracks if descriptions.get(t.pk))
        coverage[name] = covered / max(1, len(tracks))
        if text_mix != AUTO_MIX or coverage[name] >= MIN_MIX_COVERAGE:
            out[name] = {"descriptions": descriptions, "coverage": coverage[name]}
    if text_mix == AUTO_MIX and coverage.get("llm") == 0:
        out.pop("both", None)  # no LLM text at all: "both" is "templates" again
    return out


def crossmusim_train(
    *,
    seed: int = 0,
    steps: int | None = None,
    resume: bool = False,
    split: str = "default",
    backbone: str = DEFAULT_BACKBONE,
    name: str = "crossmusim",
    overrides: dict | None = None,
    extractor_factory: Callable[[], object] | None = None,
    progress: Progress = no_progress,
    on_step: Callable[[int, int, float], None] | None = None,
    text_mix: str = AUTO_MIX,
) -> CrossMuSimRun:
    """Train CrossMuSim on the split's train part, pick the step on val, score on test, register a version.

    ``text_mix`` ("templates", "llm", "both" or "auto") says which sources' kept descriptions it trains on;
    with "auto" one model is trained per mix that covers at least half the train tracks, and the mix
    with the best validation score is kept. The model's config records the mix and every candidate's
    validation score (``config["text_mix"]``, ``metrics["text_mix_val"]``).
    """
    from recommender.crossmusim.baselines import baseline_embeddings
    from recommender.crossmusim.data import TrainingData
    from recommender.crossmusim.factory import save_checkpoint
    from recommender.crossmusim.inference import embed_audio, embed_text
    from recommender.crossmusim.validation import retrieval_validator

    data = split_tracks_load(split=split, backbone=backbone, extractor_factory=extractor_factory, progress=progress)
    instrument_words = instrument_vocabulary(all_track_labels())
    candidates = text_mix_candidates(data.tracks[TRAIN], text_mix)
    if not candidates:
        raise TrainingInputError(f"no text mix covers half the training tracks of split {split!r}; "
                                 "run mine_descriptions first")
    validator = None
    if len(data.tracks[VAL]) >= 2:
        validator = retrieval_validator(TrainingData(patches=data.patches[VAL]), data.eval_labels(VAL))
    augment = crossmusim_train_config(seed=seed, steps=steps, overrides=overrides).augment
    views, view_report = None, None
    if augment.view_probability > 0 and augment.audio_views > 0:
        views, view_report = timbre_view_features(
            tracks=data.tracks[TRAIN], views=augment.audio_views, backbone=backbone,
            extractor_factory=extractor_factory, progress=progress)
    runs: dict[str, tuple] = {}
    for mix, candidate in candidates.items():
        captions, scores = _captions(data.tracks[TRAIN], candidate["descriptions"], instrument_words)
        described = sum(1 for c in captions if c)
        if described < 2:
            continue
        train_data = TrainingData.from_texts(captions, scores, patches=data.patches[TRAIN], patch_views=views,
                                             track_ids=np.array([t.pk for t in data.tracks[TRAIN]]))
        config = crossmusim_train_config(seed=seed, steps=steps, overrides=overrides)
        single = len(candidates) == 1
        checkpoint = run_checkpoint_path(name if single else f"{name}-{mix}", seed, split)
        if not (resume and single):
            checkpoint.unlink(missing_ok=True)
        config.checkpoint_path = str(checkpoint)
        config.checkpoint_every = config.checkpoint_every or max(10, config.steps // 10)
        started = time.perf_counter()
        result = crossmusim_fit(train_data, config, validator=validator, on_step=on_step, resume=resume and single)
        runs[mix] = (result, config, time.perf_counter() - started, described)
    if not runs:
        raise TrainingInputError(
            f"fewer than 2 training tracks of split {split!r} have kept descriptions; run mine_descriptions first")
    chosen = max(runs, key=lambda m: (runs[m][0].best_val_score if runs[m][0].best_val_score is not None
                                      else float("-inf"), m == "templates"))
    result, config, train_seconds, described = runs[chosen]
    network = result.model
    test_vectors = embed_audio(network, pool_many(data.patches[TEST]))
    metrics = {
        "split": split,
        "test": _test_metrics(data, test_vectors, text_embedder=lambda texts: embed_text(network, texts)),
        "baseline_test": _test_metrics(data, baseline_embeddings(pool_many(data.patches[TEST]))),
        "best_step": result.best_step, "steps_done": result.steps_done, "best_val_score": result.best_val_score,
        "val_history": result.val_history, "loss_first": result.losses[0] if result.losses else None,
        "loss_last": float(np.mean(result.losses[-10:])) if result.losses else None,
        "train_seconds": round(train_seconds, 2), "resumed_from_step": result.resumed_from_step,
        "n_tracks": {part: len(rows) for part, rows in data.tracks.items()}, "n_described_train": described,
        "text_mix_val": {mix: run[0].best_val_score for mix, run in runs.items()},
        "text_mix_coverage": {mix: round(c["coverage"], 4) for mix, c in candidates.items()},
    }
    if views is not None:
        metrics["timbre_views"] = {"per_track": augment.audio_views, "view_probability": augment.view_probability,
                                   "tracks_with_views": sum(1 for v in views if v),
                                   "extracted": view_report.extracted, "seconds": round(view_report.seconds, 1)}
    final_path = Path(settings.MODELS_DIR) / "crossmusim" / f"{name}-{uuid.uuid4().hex[:12]}.pt"
    save_checkpoint(final_path, network, train_config=config)
    with transaction.atomic():
        model = embedding_model_register(
            name=name, kind=EmbeddingModel.Kind.CROSSMUSIM, dim=network.config.embed_dim,
            tower=f"{backbone} + {network.config.audio.kind} projection",
            config={"backbone": backbone, "pooling": "mean+max", "seed": seed, "split": split,
                    "captions": {"dropped_perspectives": list(DROPPED_PERSPECTIVES), "instrument_words_cut": True},
                    "text_mix": chosen, "text_mix_sources": list(TEXT_MIXES[chosen] or ("all",)),
                    "text_mix_requested": text_mix, "train": _jsonable(config.to_dict())},
            metrics=_jsonable(metrics), checkpoint_path=str(final_path),
        )
    return CrossMuSimRun(model=model, losses=result.losses, resumed_from_step=result.resumed_from_step,
                         extraction=data.extraction, views=view_report)


def _jsonable(value):
    """Tuples, numpy scalars and paths in configs/metrics -> plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


SUMMARY_METRICS = ("style_p10", "xinst_style_p10", "mode_p10", "t2a_r10")


def describe_metrics(metrics: dict, keys: Sequence[str] = SUMMARY_METRICS) -> str:
    test = metrics.get("test", {})
    return ", ".join(f"{key} {test[key]:.3f}" for key in keys if key in test)
