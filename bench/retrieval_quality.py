"""Retrieval quality of CrossMuSim against every audio-only option, on held-out tracks.

    .venv/bin/python bench/retrieval_quality.py [--seeds 0 1 2] [--splits default heldout_styles]
    .venv/bin/python bench/retrieval_quality.py --synthetic      # no database: the synthetic catalog
    .venv/bin/python bench/retrieval_quality.py --llm-rows --rows CrossMuSim "CrossMuSim, LLM text only" ...

Loads the catalog, its named splits and the kept descriptions from the database, the
pretrained backbone's patch features from the feature cache (extracting what is missing),
and log-mels for the from-scratch CNN rows. For every seed and split it trains each row on
the train part, makes every choice (best step) on the validation part, and scores the test
part once. Prints one table per split (mean ± std over seeds), the per-seed lift of
CrossMuSim over the best audio-only row, and writes the JSON to var/bench/.

A held-out-styles split is scored on its unseen-style test tracks among themselves; as an
extra figure those tracks also query the whole test part (its seen-style tracks as
distractors). That split's validation part holds no unseen style, so tuning for unseen
styles uses ``--inner-heldout STYLE,...`` (``--splits inner_heldout``): some training styles
held out of the train and val parts, the real test part never touched.

    DJANGO_DB_NAME=bench_retrieval .venv/bin/python bench/retrieval_quality.py --score-part val \
        --splits default --set strip_mode_words=false            # a choice, on validation
    ... --splits inner_heldout --inner-heldout monteverdi_madrigal,german_folk_song,hornpipe

A held-out-instruments split (``heldout_instruments``: whole instrument families only in test,
another family only in val) is scored on its whole test part; tracks that play an instrument no
training track plays ("new instruments") also get their own figures: among themselves (style,
cross-instrument style and ensemble P@10, and cross-instrument style P@10 per held-out family),
and as queries against the test part's seen-instrument tracks only. ``--score-part val`` on it
scores the validation family, the same figures: that is where timbre choices are made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The rows train through the platform's training service, a Django module. Setting Django up
# opens no database connection: --synthetic and --catalog-dir still need no database.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

import django  # noqa: E402
import torch  # noqa: E402

django.setup()

from recommender.crossmusim.baselines import (  # noqa: E402
    baseline_embeddings,
    chance_embeddings,
    log_mel_embeddings,
    untrained_cnn_embeddings,
)
from recommender.crossmusim.config import TrainConfig  # noqa: E402
from recommender.crossmusim.data import TrainingData  # noqa: E402
from recommender.crossmusim.evaluate import METRIC_COLUMNS, EvalLabels, evaluate_embeddings  # noqa: E402
from recommender.crossmusim.features import pool_many  # noqa: E402
from recommender.crossmusim.inference import embed_audio, embed_text  # noqa: E402
from recommender.crossmusim.scratch_cnn import ScratchCNNConfig  # noqa: E402
from recommender.crossmusim.textprep import (  # noqa: E402
    DROPPED_PERSPECTIVES,
    STRIP_MODE_WORDS,
    instrument_vocabulary,
    label_free_captions,
    label_vocabulary,
    training_captions,
)
from recommender.crossmusim.validation import retrieval_validator  # noqa: E402
from recommender.democatalog.instruments import families_of  # noqa: E402
from recommender.democatalog.splits import (  # noqa: E402
    HELDOUT_INSTRUMENT_FAMILIES,
    HELDOUT_INSTRUMENTS_SPLIT,
    VALIDATION_INSTRUMENT_FAMILIES,
)
from recommender.services.embedding_training import crossmusim_fit, crossmusim_train_config  # noqa: E402

AUDIO_ONLY_ROWS = ("mean-pooled log-mel", "untrained small CNN", "SimCLR small CNN", "pretrained features",
                   "pretrained features (z-scored)", "projection + SimCLR")
BASELINE_ROW = "pretrained features"
MAIN_ROW = "CrossMuSim"
# the mode ablation is the opposite of what CrossMuSim does (BenchSettings.strip_mode_words)
MODE_FREE_ROW = "CrossMuSim, mode words removed"
MODE_KEPT_ROW = "CrossMuSim, mode words kept"
WHOLE_COLUMNS = ("whole_style_p10", "whole_xinst_style_p10", "whole_mode_p10")
# --llm-rows: CrossMuSim on the text of chosen sources (the "templates" are the platform's own writers and shipped
# text), and the label-leak ablation on the LLM's text; "all" keeps the product's caption pipeline.
TEMPLATE_SOURCES = ("metadata", "document", "web")
LLM_ROWS = (("CrossMuSim, templates only", TEMPLATE_SOURCES, "all"),
            ("CrossMuSim, LLM text only", ("llm",), "all"),
            ("CrossMuSim, templates + LLM", (*TEMPLATE_SOURCES, "llm"), "all"),
            ("CrossMuSim, LLM text, label words removed", ("llm",), "label_free"))
# New-instrument figures (tracks playing an instrument no training track plays): among themselves,
# and as queries against the scored part's seen-instrument tracks; plus "new_family:<name>" columns.
NEW_COLUMNS = ("new_style_p10", "new_xinst_style_p10", "new_instrument_p10", "new2seen_style_p10",
               "new2seen_xinst_style_p10")
NEW_FAMILY_PREFIX = "new_family:"
# The from-scratch CNN rows' deliberate differences from the product's config (the platform
# never trains that tower): fewer, smaller-batch steps at a higher rate on 48-band log-mels
# cut into 128-frame crops, a narrower projection, and validation every 125 steps because
# embedding the validation tracks through the CNN is the slow part.
SCRATCH_MELS = 48
SCRATCH_CROP_FRAMES = 128
SCRATCH_HIDDEN_DIM = 256
SCRATCH_LR = 2e-3
# The configuration the platform trains CrossMuSim with (recommender.services.embedding_training):
# every BenchSettings knob of the config starts at its value there.
PRODUCT = crossmusim_train_config()


@dataclass
class Description:
    text: str
    score: float
    source: str
    perspective: str = ""


@dataclass
class BenchCatalog:
    """Everything the bench needs, aligned by row (one row per track)."""

    track_ids: np.ndarray
    labels: list[dict]
    patches: list[np.ndarray]
    logmels: list[np.ndarray]
    descriptions: list[list[Description]]
    documents: list[str]
    splits: dict[str, dict[str, np.ndarray]]
    encoder: Callable[[list[str]], np.ndarray]
    label_words: set[str] = field(default_factory=set)
    instrument_words: set[str] = field(default_factory=set)
    patch_views: list[list[np.ndarray]] | None = None  # extra views per row (bench/timbre_views.py, --views)

    def instruments(self, row: int) -> set[str]:
        value = self.labels[row].get("instruments") or self.labels[row].get("ensemble", "")
        return set(value.split("+") if isinstance(value, str) else value)

    def eval_labels(self, rows: np.ndarray) -> EvalLabels:
        return EvalLabels(style=[str(self.labels[i].get("style", "")) for i in rows],
                          ensemble=[str(self.labels[i].get("ensemble", "")) for i in rows],
                          mode=[str(self.labels[i].get("mode", "")) for i in rows],
                          work_id=[str(self.labels[i].get("work_id", self.track_ids[i])) for i in rows])


# --- settings of the rows (tuned on the validation part only; see --score-part val) -----------

@dataclass
class BenchSettings:
    """Knobs for ``--set``. Those of the training config default to the product's values (``PRODUCT``),
    the caption ones to the product's caption choices (textprep); the scratch rows' own are marked."""

    text_steps: int = PRODUCT.steps
    text_lr: float = PRODUCT.lr
    embed_dim: int = PRODUCT.model.embed_dim
    hidden_dim: int = PRODUCT.model.audio.hidden_dim
    batch_size: int = PRODUCT.batch_size
    feature_noise: float = PRODUCT.augment.feature_noise
    input_dropout: float = PRODUCT.model.audio.input_dropout
    window_min_frac: float = PRODUCT.augment.patch_window_min_frac
    init_temperature: float = math.exp(-PRODUCT.model.init_logit_scale)
    use_score_weights: bool = PRODUCT.use_score_weights
    sample_by_score: bool = PRODUCT.augment.sample_by_score
    duplicate_threshold: float = PRODUCT.duplicate_threshold
    duplicates: str = PRODUCT.duplicates
    # chosen on the validation part (default split, seed 0): see textprep.DROPPED_PERSPECTIVES
    drop_perspectives: tuple[str, ...] = DROPPED_PERSPECTIVES
    strip_instrument_words: bool = True  # cut instrument names from the other captions too
    # every CrossMuSim row's text without key/mode names and mode-chosen mood adjectives (textprep);
    # the "mode words removed" row always has them removed
    strip_mode_words: bool = STRIP_MODE_WORDS
    perspectives: tuple[str, ...] = ()  # empty = every perspective
    sources: tuple[str, ...] = ()  # empty = every source
    audio_steps: int = PRODUCT.steps  # the audio-only reference rows train as long as CrossMuSim
    scratch_steps: int = 250  # scratch rows (see SCRATCH_*)
    scratch_batch: int = 32  # scratch rows
    scratch_eval_every: int = 125  # scratch rows
    eval_every: int = PRODUCT.eval_every
    # timbre robustness (recommender.crossmusim.timbre), chosen on heldout_instruments' validation family
    timbre_mix: float = PRODUCT.augment.timbre_mix
    timbre_dropout: float = PRODUCT.augment.timbre_dropout
    timbre_transplant: float = PRODUCT.augment.timbre_transplant
    timbre_clusters: int = PRODUCT.augment.timbre_clusters
    timbre_decorrelation: float = PRODUCT.timbre_decorrelation
    timbre_components: int = PRODUCT.timbre_components
    input_clip: float = PRODUCT.model.audio.input_clip
    audio_views: int = PRODUCT.augment.audio_views  # timbre views per training track (services.timbre_views)
    view_probability: float = PRODUCT.augment.view_probability  # a training track pooled from one of its views
    view_channels: str = PRODUCT.augment.view_channels  # "all" or "timbral" (only those channels from the view)


def _product_config(s: BenchSettings, seed: int, objective: str) -> TrainConfig:
    """The product's config for ``seed`` with the objective and the knobs every trained row shares."""
    config = crossmusim_train_config(seed=seed)
    return replace(config, objective=objective, duplicate_threshold=s.duplicate_threshold,
                   use_score_weights=s.use_score_weights, duplicates=s.duplicates,
                   model=replace(config.model, embed_dim=s.embed_dim))


def _text_config(s: BenchSettings, seed: int, objective: str = "text", steps: int | None = None) -> TrainConfig:
    """The rows on the pretrained features (CrossMuSim, its ablations, the projection references)."""
    config = _product_config(s, seed, objective)
    return replace(
        config, steps=steps or s.text_steps, batch_size=s.batch_size, lr=s.text_lr, eval_every=s.eval_every,
        timbre_decorrelation=s.timbre_decorrelation, timbre_components=s.timbre_components,
        model=replace(config.model, init_logit_scale=math.log(1 / s.init_temperature),
                      audio=replace(config.model.audio, hidden_dim=s.hidden_dim, input_dropout=s.input_dropout,
                                    input_clip=s.input_clip)),
        augment=replace(config.augment, patch_window_min_frac=s.window_min_frac, feature_noise=s.feature_noise,
                        sample_by_score=s.sample_by_score, timbre_mix=s.timbre_mix, timbre_dropout=s.timbre_dropout,
                        timbre_transplant=s.timbre_transplant, timbre_clusters=s.timbre_clusters,
                        view_probability=s.view_probability, view_channels=s.view_channels),
    )


def _scratch_config(s: BenchSettings, seed: int, objective: str) -> TrainConfig:
    """The from-scratch CNN rows: the product's config with the SCRATCH_* overrides."""
    config = _product_config(s, seed, objective)
    audio = replace(config.model.audio, kind="scratch_cnn", hidden_dim=SCRATCH_HIDDEN_DIM,
                    scratch=ScratchCNNConfig(n_mels=SCRATCH_MELS, crop_frames=SCRATCH_CROP_FRAMES))
    return replace(config, steps=s.scratch_steps, batch_size=s.scratch_batch, lr=SCRATCH_LR,
                   eval_every=s.scratch_eval_every, model=replace(config.model, audio=audio))


# --- text of the rows --------------------------------------------------------------------------

def captions_for(cat: BenchCatalog, rows: np.ndarray, kind: str, s: BenchSettings):
    """(texts, scores) per track, through the platform's caption pipeline (``textprep.training_captions``):
    kept descriptions ("all"), label-free descriptions ("label_free"), document text only ("documents"),
    kept descriptions without mode words ("mode_free") or, whatever ``s.strip_mode_words`` says, with
    them ("mode_kept"). ``s.perspectives`` / ``s.sources`` choose which descriptions go in."""
    mode_words = kind == "mode_kept" or (kind != "mode_free" and not s.strip_mode_words)
    instrument_words = cat.instrument_words if s.strip_instrument_words else set()
    texts, scores = [], []
    for i in rows:
        if kind == "documents":
            chosen = [d for d in cat.descriptions[i] if d.source == "document"]
            if not chosen and cat.documents[i].strip():
                chosen = [Description(cat.documents[i].strip()[:1000], 1.0, "document")]
        else:
            chosen = [d for d in cat.descriptions[i]
                      if (not s.perspectives or d.perspective in s.perspectives or d.source != "metadata")
                      and (not s.sources or d.source in s.sources)]
        track_texts, track_scores = training_captions(
            [(d.text, d.score, d.perspective) for d in chosen], instrument_words,
            drop_perspectives=s.drop_perspectives, mode_words=mode_words)
        if kind == "label_free":
            track_texts, track_scores = label_free_captions(track_texts, track_scores, cat.label_words)
        texts.append(track_texts)
        scores.append(track_scores)
    return texts, scores


_text_cache: dict[str, np.ndarray] = {}


def text_data(cat: BenchCatalog, rows: np.ndarray, kind: str, s: BenchSettings) -> TrainingData:
    texts, scores = captions_for(cat, rows, kind, s)
    missing = sorted({t for ts in texts for t in ts} - set(_text_cache))
    if missing:
        _text_cache.update(zip(missing, cat.encoder(missing), strict=True))
    views = [cat.patch_views[i] for i in rows] if cat.patch_views is not None else None
    return TrainingData.from_texts(texts, scores, encoder=lambda xs: np.stack([_text_cache[x] for x in xs]),
                                   patches=[cat.patches[i] for i in rows], logmels=[cat.logmels[i] for i in rows],
                                   patch_views=views)


def text_queries(cat: BenchCatalog, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query per test track that has a description: its best-scored kept description."""
    queries, targets = [], []
    for position, i in enumerate(rows):
        if cat.descriptions[i]:
            best = max(cat.descriptions[i], key=lambda d: d.score)
            queries.append(best.text)
            targets.append(position)
    missing = sorted(set(queries) - set(_text_cache))
    if missing:
        _text_cache.update(zip(missing, cat.encoder(missing), strict=True))
    vectors = np.stack([_text_cache[q] for q in queries]) if queries else np.zeros((0, 384), np.float32)
    return vectors, np.array(targets, dtype=np.int64)


# --- one split, one seed -----------------------------------------------------------------------

def run_split(cat: BenchCatalog, split: str, seed: int, s: BenchSettings, rows_wanted: set[str] | None = None,
              part_to_score: str = "test", log=print, llm_rows: bool = False) -> dict[str, dict]:
    parts = cat.splits[split]
    train, val = parts["train"], parts["val"]
    scored = whole = parts[part_to_score]
    seen = {cat.labels[i].get("style", "") for i in train}
    unseen = np.array([i for i in scored if cat.labels[i].get("style", "") not in seen], dtype=np.int64)
    if len(unseen) >= 2:  # a held-out-styles split is scored on the styles never seen in training
        scored = unseen
    # Every row embeds the whole scored part; the table's figures use the ``scored`` tracks among
    # themselves. When those are the unseen styles, an extra figure lets them query the whole part
    # (the seen-style tracks of the part as distractors): ``whole_*`` columns.
    extra_whole = len(scored) < len(whole)
    new, new_family = new_instrument_tracks(cat, train, scored)
    embedded = whole if extra_whole else scored
    position = {int(row): k for k, row in enumerate(embedded)}
    in_scored = np.array([position[int(row)] for row in scored], dtype=np.int64)
    labels_val, labels_scored, labels_whole = cat.eval_labels(val), cat.eval_labels(scored), cat.eval_labels(whole)
    query_vectors, query_targets = text_queries(cat, scored)
    styles = sorted({cat.labels[i].get("style", "") for i in train})
    style_index = {name: k for k, name in enumerate(styles)}
    results: dict[str, dict] = {}

    def want(name: str) -> bool:
        return rows_wanted is None or name in rows_wanted

    def record(name: str, embeddings: np.ndarray, seconds: float = 0.0, model=None, extra: dict | None = None):
        """``embeddings`` are those of the ``embedded`` rows."""
        text = embed_text(model, query_vectors) if model is not None and len(query_vectors) else None
        metrics = evaluate_embeddings(embeddings[in_scored], labels_scored, text,
                                      query_targets if text is not None else None)
        if extra_whole:
            whole_metrics = evaluate_embeddings(embeddings, labels_whole, queries=in_scored)
            metrics.update({column: whole_metrics[column.removeprefix("whole_")] for column in WHOLE_COLUMNS})
        if len(new):
            metrics.update(new_instrument_metrics(embeddings[in_scored], labels_scored, new, new_family))
        results[name] = {**metrics, "train_seconds": round(seconds, 2), "n_scored": len(scored),
                         **({"n_new": len(new)} if len(new) else {}),
                         **({"n_whole": len(whole)} if extra_whole else {}), **(extra or {})}
        log(f"  [{split} seed {seed}] {name:34s} xinst P@10 {metrics['xinst_style_p10']:.3f}  "
            f"style P@10 {metrics['style_p10']:.3f}  mode P@10 {metrics['mode_p10']:.3f}"
            + (f"  whole-part xinst P@10 {metrics['whole_xinst_style_p10']:.3f}" if extra_whole else "")
            + (f"  new-instr xinst P@10 {metrics['new_xinst_style_p10']:.3f} ensemble P@10 "
               f"{metrics['new_instrument_p10']:.3f} new->seen {metrics['new2seen_style_p10']:.3f}" if len(new) else "")
            + f"  ({seconds:.1f} s" + (f", best step {extra['best_step']})" if extra else ")"), flush=True)

    pooled_train = pool_many([cat.patches[i] for i in train])
    pooled_embedded = pool_many([cat.patches[i] for i in embedded])
    if want("chance"):
        record("chance", chance_embeddings(len(embedded), seed=seed))
    if want("mean-pooled log-mel"):
        record("mean-pooled log-mel", log_mel_embeddings([cat.logmels[i] for i in embedded]))
    if want("untrained small CNN"):
        record("untrained small CNN", untrained_cnn_embeddings(
            [cat.logmels[i] for i in embedded], ScratchCNNConfig(n_mels=SCRATCH_MELS, crop_frames=128), seed=seed))
    if want("pretrained features"):
        record("pretrained features", baseline_embeddings(pooled_embedded))
    if want("pretrained features (z-scored)"):
        record("pretrained features (z-scored)",
               baseline_embeddings(pooled_embedded, pooled_train.mean(0), pooled_train.std(0)))

    def trained(name: str, data: TrainingData, val_data: TrainingData, config: TrainConfig, scored_inputs):
        torch.manual_seed(seed)
        result = crossmusim_fit(data, config, validator=retrieval_validator(val_data, labels_val))
        embeddings = embed_audio(result.model, scored_inputs)
        record(name, embeddings, result.train_seconds, result.model if config.objective == "text" else None,
               {"best_step": result.best_step, "val_xinst_style_p10": result.best_val_score})
        return result

    # the audio-only trained rows hear the same timbre views as CrossMuSim (SimCLR then pairs a track with its
    # views): the ablation that would explain a gain of the views away from the text
    audio_train = TrainingData(patches=[cat.patches[i] for i in train], logmels=[cat.logmels[i] for i in train],
                               labels=np.array([style_index[cat.labels[i].get("style", "")] for i in train]),
                               patch_views=[cat.patch_views[i] for i in train] if cat.patch_views else None)
    audio_val = TrainingData(patches=[cat.patches[i] for i in val], logmels=[cat.logmels[i] for i in val])
    embedded_logmels = [cat.logmels[i] for i in embedded]
    if want("supervised style classifier (ceiling)"):
        trained("supervised style classifier (ceiling)", audio_train, audio_val,
                _text_config(s, seed, "supervised", s.audio_steps), pooled_embedded)
    if want(MAIN_ROW):
        trained(MAIN_ROW, text_data(cat, train, "all", s), audio_val, _text_config(s, seed), pooled_embedded)
    if want(MODE_FREE_ROW) or want(MODE_KEPT_ROW):
        name, kind = (MODE_KEPT_ROW, "mode_kept") if s.strip_mode_words else (MODE_FREE_ROW, "mode_free")
        trained(name, text_data(cat, train, kind, s), audio_val, _text_config(s, seed), pooled_embedded)
    if want("CrossMuSim, label-free text"):
        trained("CrossMuSim, label-free text", text_data(cat, train, "label_free", s), audio_val,
                _text_config(s, seed), pooled_embedded)
    if want("CrossMuSim, document text only"):
        data = text_data(cat, train, "documents", s)
        if sum(len(e) > 0 for e in data.caption_embeddings) >= 2:
            trained("CrossMuSim, document text only", data, audio_val, _text_config(s, seed), pooled_embedded)
    if llm_rows:  # --llm-rows: what the LLM's text does (issue #26), beside the rows above
        for name, sources, kind in LLM_ROWS:
            if not want(name):
                continue
            data = text_data(cat, train, kind, replace(s, sources=sources))
            if sum(len(e) > 0 for e in data.caption_embeddings) >= 2:
                trained(name, data, audio_val, _text_config(s, seed), pooled_embedded)
            else:
                log(f"  [{split} seed {seed}] {name}: fewer than 2 training tracks have such text; skipped")
    if want("SimCLR small CNN"):
        trained("SimCLR small CNN", audio_train, audio_val, _scratch_config(s, seed, "simclr"), embedded_logmels)
    if want("projection + SimCLR"):
        trained("projection + SimCLR", audio_train, audio_val,
                _text_config(s, seed, "simclr", s.audio_steps), pooled_embedded)
    if want("CrossMuSim, scratch CNN tower"):
        trained("CrossMuSim, scratch CNN tower", text_data(cat, train, "all", s), audio_val,
                _scratch_config(s, seed, "text"), embedded_logmels)
    return results


def new_instrument_tracks(cat: BenchCatalog, train: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Positions in ``scored`` of the tracks that play an instrument no training track plays, and each one's
    family: the held-out (test, else validation) family of the split it belongs to, else its new families."""
    seen = set().union(*(cat.instruments(i) for i in train)) if len(train) else set()
    positions, families = [], []
    named = (*HELDOUT_INSTRUMENT_FAMILIES, *VALIDATION_INSTRUMENT_FAMILIES)
    for k, row in enumerate(scored):
        unseen = cat.instruments(row) - seen
        if unseen:
            found = families_of(unseen)
            positions.append(k)
            families.append(next((f for f in named if f in found), "+".join(sorted(found))))
    if len(positions) < 2:
        return np.zeros(0, dtype=np.int64), []
    return np.array(positions, dtype=np.int64), families


def new_instrument_metrics(embeddings: np.ndarray, labels: EvalLabels, new: np.ndarray,
                           families: list[str]) -> dict[str, float]:
    """The new-instrument figures over the scored tracks' embeddings (rows aligned with ``labels``).

    ``new_*``: the new-instrument tracks among themselves (a catalog of unfamiliar timbres only);
    ``new2seen_*``: each new-instrument track queries the seen-instrument tracks only (a new recording
    searching the catalog the model knows); ``new_family:F``: cross-instrument style P@10 of the queries
    of held-out family F among all new-instrument tracks.
    """
    def subset(rows) -> EvalLabels:
        return EvalLabels(*(None if values is None else [values[i] for i in rows]
                            for values in (labels.style, labels.ensemble, labels.mode, labels.work_id)))

    among = evaluate_embeddings(embeddings[new], subset(new))
    out = {"new_style_p10": among["style_p10"], "new_xinst_style_p10": among["xinst_style_p10"],
           "new_instrument_p10": among["instrument_p10"]}
    seen = np.setdiff1d(np.arange(len(labels)), new)
    if len(seen):
        rows = np.concatenate([new, seen])
        to_seen = evaluate_embeddings(embeddings[rows], subset(rows), queries=np.arange(len(new)),
                                      candidates=np.arange(len(new), len(rows)))
        out.update({"new2seen_style_p10": to_seen["style_p10"], "new2seen_xinst_style_p10": to_seen["xinst_style_p10"]})
    for family in sorted(set(families)):
        queries = np.array([k for k, f in enumerate(families) if f == family])
        if len(queries) >= 2:
            out[NEW_FAMILY_PREFIX + family] = evaluate_embeddings(
                embeddings[new], subset(new), queries=queries)["xinst_style_p10"]
    return out


# --- summary -----------------------------------------------------------------------------------

def summarise(per_seed: list[dict[str, dict]]) -> dict:
    names = list(per_seed[0])
    table = {}
    for name in names:
        table[name] = {}
        family_columns = sorted({c for run in per_seed for c in run.get(name, {}) if c.startswith(NEW_FAMILY_PREFIX)})
        for column in (*METRIC_COLUMNS, *WHOLE_COLUMNS, *NEW_COLUMNS, *family_columns, "train_seconds"):
            values = [run[name][column] for run in per_seed if name in run and column in run[name]]
            if values:
                table[name][column] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                       "values": [float(v) for v in values]}
    def lifts(column: str, row: str = MAIN_ROW) -> list[float]:
        out = []
        for run in per_seed:
            audio_only = [run[n][column] for n in AUDIO_ONLY_ROWS if n in run and column in run[n]]
            if row in run and column in run[row] and audio_only:
                best = max(audio_only)
                out.append(run[row][column] / best if best > 0 else float("inf"))
        return out

    summary = {"table": table, "lift_over_best_audio_only": lifts("xinst_style_p10")}
    if any("new_xinst_style_p10" in cells for cells in table.values()):
        summary["new_instruments"] = new_instrument_summary(per_seed, lifts)
    if "supervised style classifier (ceiling)" in table:
        summary["ceiling_over_best_audio_only"] = lifts("xinst_style_p10", "supervised style classifier (ceiling)")
    if any("whole_xinst_style_p10" in cells for cells in table.values()):
        summary["whole_lift_over_best_audio_only"] = lifts("whole_xinst_style_p10")
    if MAIN_ROW in table and "supervised style classifier (ceiling)" in table:
        summary["fraction_of_ceiling"] = (table[MAIN_ROW]["xinst_style_p10"]["mean"]
                                          / table["supervised style classifier (ceiling)"]["xinst_style_p10"]["mean"])
    if BASELINE_ROW in table:
        summary["mode_p10_gaps"] = {name: table[name]["mode_p10"]["mean"] - table[BASELINE_ROW]["mode_p10"]["mean"]
                                    for name in (MAIN_ROW, MODE_FREE_ROW, MODE_KEPT_ROW) if name in table}
        summary["mode_p10_within_style_gaps"] = {
            name: table[name]["mode_p10_within_style"]["mean"] - table[BASELINE_ROW]["mode_p10_within_style"]["mean"]
            for name in (MAIN_ROW, MODE_FREE_ROW, MODE_KEPT_ROW) if name in table}
        if MAIN_ROW in table:
            summary["mode_p10_gap"] = summary["mode_p10_gaps"][MAIN_ROW]
    return summary


def new_instrument_summary(per_seed: list[dict[str, dict]], lifts: Callable[[str], list[float]]) -> dict:
    """Per seed: CrossMuSim's lift on each new-instrument figure, and its ensemble P@10 on the new tracks next
    to that of the best audio-only row on them (a model that groups by style, not timbre, has the lower)."""
    family_columns = sorted({c for run in per_seed for cells in run.values() for c in cells
                             if c.startswith(NEW_FAMILY_PREFIX)})
    ensemble = []
    for run in per_seed:
        audio_only = [n for n in AUDIO_ONLY_ROWS if n in run and "new_xinst_style_p10" in run[n]]
        if MAIN_ROW in run and audio_only:
            best = max(audio_only, key=lambda n: run[n]["new_xinst_style_p10"])
            ensemble.append({"crossmusim": run[MAIN_ROW]["new_instrument_p10"], "best_audio_only_row": best,
                             "best_audio_only": run[best]["new_instrument_p10"]})
    return {"lift_new": lifts("new_xinst_style_p10"), "lift_new2seen": lifts("new2seen_style_p10"),
            "lift_family": {c.removeprefix(NEW_FAMILY_PREFIX): lifts(c) for c in family_columns},
            "ensemble_p10": ensemble}


def print_new_instruments(summary: dict) -> None:
    new = summary.get("new_instruments")
    if not new:
        return
    table = summary["table"]
    family_columns = sorted({c for cells in table.values() for c in cells if c.startswith(NEW_FAMILY_PREFIX)})
    columns = (*NEW_COLUMNS[:4], *family_columns)
    heads = ("style P@10", "x-inst P@10", "ensemble P@10", "new->seen style P@10",
             *(f"x-inst P@10 {c.removeprefix(NEW_FAMILY_PREFIX)}" for c in family_columns))
    n_new = next((run.get("n_new") for run in summary.get("per_seed", [{}])[0].values()), "")
    print(f"\nNew instruments ({n_new} tracks that play an instrument no training track plays): among themselves, "
          "and as queries against the seen-instrument tracks only (new->seen)\n")
    print("| row | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for name, cells in table.items():
        if "new_xinst_style_p10" in cells:
            print(f"| {name} | " + " | ".join(f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" if c in cells else "–"
                                            for c in columns) + " |")

    def per_seed(values: list[float]) -> str:
        return ", ".join(f"{x:.2f}x" for x in values)

    print("\nCrossMuSim over the best audio-only row, per seed: new instruments x-inst P@10 "
          f"{per_seed(new['lift_new'])};"
          f" new->seen style P@10 {per_seed(new['lift_new2seen'])}")
    for family, values in new["lift_family"].items():
        print(f"  {family}: {per_seed(values)}")
    for seed_figures in new["ensemble_p10"]:
        print(f"ensemble P@10 on the new tracks: CrossMuSim {seed_figures['crossmusim']:.3f} vs "
              f"{seed_figures['best_audio_only_row']} {seed_figures['best_audio_only']:.3f}")


def print_table(split: str, summary: dict) -> None:
    columns = ("style_p1", "style_p10", "style_map", "style_ndcg10", "xinst_style_p10", "xinst_style_map",
               "instrument_p10", "mode_p10", "mode_p10_within_style", "t2a_r1", "t2a_r5", "t2a_r10", "train_seconds")
    heads = ("style P@1", "style P@10", "style mAP", "nDCG@10", "x-inst P@10", "x-inst mAP", "instr P@10",
             "mode P@10", "mode P@10 in style", "t2a R@1", "t2a R@5", "t2a R@10", "train s")
    print(f"\n### split: {split}\n")
    print("| row | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for name, cells in summary["table"].items():
        row = []
        for column in columns:
            cell = cells.get(column)
            if cell is None:
                row.append("–")
            elif column == "train_seconds":
                row.append(f"{cell['mean']:.1f}")
            else:
                row.append(f"{cell['mean']:.3f} ± {cell['std']:.3f}")
        print(f"| {name} | " + " | ".join(row) + " |")
    def per_seed(values: list[float]) -> str:
        return ", ".join(f"{x:.2f}x" for x in values)

    print(f"\nCrossMuSim cross-instrument style P@10 over the best audio-only row, per seed: "
          f"{per_seed(summary['lift_over_best_audio_only'])}")
    if summary.get("ceiling_over_best_audio_only"):
        print(f"the supervised ceiling over the best audio-only row, per seed: "
              f"{per_seed(summary['ceiling_over_best_audio_only'])}")
    if "fraction_of_ceiling" in summary:
        print(f"fraction of the supervised ceiling: {summary['fraction_of_ceiling']:.1%}")
    for name, gap in summary.get("mode_p10_gaps", {}).items():
        print(f"mode P@10, {name} minus {BASELINE_ROW}: {gap:+.3f} "
              f"(within the query's style: {summary['mode_p10_within_style_gaps'][name]:+.3f})")
    whole = [(name, cells) for name, cells in summary["table"].items() if "whole_xinst_style_p10" in cells]
    if whole:
        print("\nExtra figure (not the table's): the unseen-style tracks query the whole scored part, "
              "its seen-style tracks included as distractors\n")
        print("| row | style P@10 | x-inst P@10 | mode P@10 |")
        print("|---|---|---|---|")
        for name, cells in whole:
            print(f"| {name} | " + " | ".join(f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" for c in WHOLE_COLUMNS)
                  + " |")
        print(f"\nCrossMuSim over the best audio-only row on that figure, per seed: "
              f"{per_seed(summary.get('whole_lift_over_best_audio_only', []))}")


# --- data sources ------------------------------------------------------------------------------

def _cached_encoder(cache_path: Path) -> Callable[[list[str]], np.ndarray]:
    """MiniLM with an on-disk cache keyed by text hash (the frozen tower never changes)."""
    from recommender.crossmusim.text_encoder import encode_texts

    stored: dict[str, np.ndarray] = {}
    if cache_path.exists():
        with np.load(cache_path) as data:
            stored = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def encode(texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in stored}.items())
        if todo:
            vectors = encode_texts([t for _, t in todo])
            stored.update(zip([k for k, _ in todo], vectors, strict=True))
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            # atomic: several bench processes may share the cache
            tmp = cache_path.with_name(f"{cache_path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, keys=np.array(list(stored)), vectors=np.stack(list(stored.values())))
            tmp.replace(cache_path)
        return np.stack([stored[k] for k in keys])

    return encode


def load_database_catalog(backbone: str = "MTT_musicnn") -> BenchCatalog:
    from tqdm import tqdm

    from recommender.crossmusim.audio_io import load_mono
    from recommender.crossmusim.logmel import log_mel_spectrogram
    from recommender.models import DatasetSplit, Track
    from recommender.models import Description as DescriptionRow
    from recommender.selectors import all_track_labels
    from recommender.services.embedding_runtime import backbone_extractor
    from recommender.services.embeddings import cached_features, feature_cache

    tracks = list(Track.objects.filter(splits__isnull=False).distinct().order_by("id"))
    if not tracks:
        raise SystemExit("no tracks with a dataset split: build the demo catalog first (build_demo_catalog)")
    kept, patches, report = cached_features(
        tracks=tracks, cache=feature_cache(backbone), extractor_factory=lambda: backbone_extractor(backbone),
        progress=lambda items: tqdm(items, desc=f"features {backbone}", unit="track"))
    for name, reason in report.failed:
        print(f"skipped {name}: {reason}")
    tracks = kept
    row_of = {t.pk: i for i, t in enumerate(tracks)}
    logmel_cache = ROOT / "var" / "bench" / f"logmel{SCRATCH_MELS}"
    logmels = []
    for track in tqdm(tracks, desc="log-mel", unit="track"):
        path = logmel_cache / f"{track.checksum}.npy"
        if path.exists():
            logmels.append(np.load(path))
            continue
        wave, _ = load_mono(Path(track.audio_path), target_rate=16000)
        logmel = log_mel_spectrogram(wave, n_mels=SCRATCH_MELS).astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, logmel)
        logmels.append(logmel)
    logmels = [m.astype(np.float32) for m in logmels]
    descriptions: list[list[Description]] = [[] for _ in tracks]
    for row in DescriptionRow.objects.filter(kept=True, track_id__in=row_of).order_by("id"):
        descriptions[row_of[row.track_id]].append(
            Description(row.text, float(row.score if row.score is not None else 1.0), row.source, row.perspective))
    splits: dict[str, dict[str, list[int]]] = {}
    for entry in DatasetSplit.objects.filter(track_id__in=row_of).values("name", "track_id", "part"):
        splits.setdefault(entry["name"], {"train": [], "val": [], "test": []})[entry["part"]].append(
            row_of[entry["track_id"]])
    labels = [t.labels or {} for t in tracks]
    values = [str(label.get(key, "")) for label in labels for key in ("style", "tune_type", "collection", "composer")]
    values += [t.artist for t in tracks] + [t.album for t in tracks]
    return BenchCatalog(
        track_ids=np.array([t.pk for t in tracks]), labels=labels, patches=patches, logmels=logmels,
        descriptions=descriptions, documents=[t.document_text or "" for t in tracks],
        splits={n: {p: np.array(sorted(r), dtype=np.int64) for p, r in parts.items()} for n, parts in splits.items()},
        encoder=_cached_encoder(ROOT / "var" / "bench" / "text_embeddings.npz"),
        label_words=label_vocabulary(v for v in values if v),
        # the instrument names the platform's training cuts: those of every track in the catalog
        instrument_words=instrument_vocabulary(all_track_labels()),
    )


def load_file_catalog(catalog_dir: Path, backbone: str = "MTT_musicnn") -> BenchCatalog:
    """Development path without the database: a built demo catalog directory (metadata.json, splits.csv).

    Only tracks whose backbone features are already cached are used; descriptions are the
    offline metadata templates (score 1.0) plus the shipped document text. The report uses
    the database path (kept, mined descriptions).
    """
    import csv

    from recommender.crossmusim.audio_io import file_checksum, load_mono
    from recommender.crossmusim.descriptions.templates import write_template_descriptions
    from recommender.crossmusim.descriptions.types import TrackInfo
    from recommender.crossmusim.logmel import log_mel_spectrogram

    entries = json.loads((catalog_dir / "metadata.json").read_text())
    with open(catalog_dir / "splits.csv") as handle:
        split_rows = {row["path"]: row for row in csv.DictReader(handle)}
    cache = ROOT / "var" / "models" / "features" / backbone
    rows: list[dict] = []
    for entry in entries:
        path = catalog_dir / entry["path"]
        if entry["path"] not in split_rows or not path.exists():
            continue
        checksum = file_checksum(path)
        feature_path = cache / checksum[:2] / f"{checksum}.npy"
        if feature_path.exists():
            rows.append({**entry, "checksum": checksum, "features": np.load(feature_path), "file": path})
    logmels, descriptions = [], []
    for i, row in enumerate(rows):
        path = ROOT / "var" / "bench" / f"logmel{SCRATCH_MELS}" / f"{row['checksum']}.npy"
        if path.exists():
            logmels.append(np.load(path).astype(np.float32))
        else:
            wave, _ = load_mono(row["file"], target_rate=16000)
            logmel = log_mel_spectrogram(wave, n_mels=SCRATCH_MELS)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, logmel.astype(np.float16))
            logmels.append(logmel)
        info = TrackInfo(track_id=i, title=row["title"], composer=row.get("composer", ""),
                         collection=row.get("collection", ""), labels=row["labels"],
                         document_text=row.get("document_text", ""))
        texts = [Description(d.text, 1.0, "metadata", d.perspective) for d in write_template_descriptions(info)]
        if row.get("document_text"):
            texts.append(Description(" ".join(row["document_text"].split()), 1.0, "document", "document"))
        descriptions.append(texts)
    splits: dict[str, dict[str, list[int]]] = {}
    for i, row in enumerate(rows):
        for name in ("default", "heldout_styles", HELDOUT_INSTRUMENTS_SPLIT):
            part = split_rows[row["path"]].get(name)
            if part:
                splits.setdefault(name, {"train": [], "val": [], "test": []})[part].append(i)
    labels = [row["labels"] for row in rows]
    values = [str(label.get(key, "")) for label in labels for key in ("style", "tune_type", "collection", "composer")]
    values += [row.get("composer", "") for row in rows] + [row.get("collection", "") for row in rows]
    return BenchCatalog(
        track_ids=np.arange(len(rows)), labels=labels, patches=[row["features"] for row in rows], logmels=logmels,
        descriptions=descriptions, documents=[row.get("document_text", "") for row in rows],
        splits={n: {p: np.array(sorted(r), dtype=np.int64) for p, r in parts.items()} for n, parts in splits.items()},
        encoder=_cached_encoder(ROOT / "var" / "bench" / "text_embeddings.npz"),
        label_words=label_vocabulary(v for v in values if v), instrument_words=instrument_vocabulary(labels),
    )


def load_synthetic_catalog(n_tracks: int = 480) -> BenchCatalog:
    from recommender.crossmusim.synthetic import make_synthetic_catalog

    syn = make_synthetic_catalog(n_tracks=n_tracks, n_styles=8, n_mels=SCRATCH_MELS, n_frames=400, seed=0)
    lookup = {t: v for texts, vecs in zip(syn.captions, syn.caption_embeddings, strict=True)
              for t, v in zip(texts, vecs, strict=True)}

    def encoder(texts: list[str]) -> np.ndarray:
        rng = [np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)) for t in texts]
        return np.stack([lookup.get(t, r.normal(size=384).astype(np.float32)) for t, r in zip(texts, rng,
                                                                                               strict=True)])

    rng = np.random.default_rng(0)
    order = rng.permutation(n_tracks)
    cut1, cut2 = int(0.7 * n_tracks), int(0.85 * n_tracks)
    held = np.isin(syn.style, ["s0", "s1", "s2"])
    seen = rng.permutation(np.flatnonzero(~held))
    splits = {
        "default": {"train": np.sort(order[:cut1]), "val": np.sort(order[cut1:cut2]), "test": np.sort(order[cut2:])},
        "heldout_styles": {"train": np.sort(seen[: int(0.8 * len(seen))]), "val": np.sort(seen[int(0.8 * len(seen)):]),
                           "test": np.flatnonzero(held)},
    }
    # ensembles e0, e1 only in test, e4 only in val (the synthetic twin of heldout_instruments)
    new_test, new_val = np.isin(syn.ensemble, ["e0", "e1"]), syn.ensemble == "e4"
    rest = order[~(new_test | new_val)[order]]
    splits[HELDOUT_INSTRUMENTS_SPLIT] = {"train": np.sort(rest[: int(0.8 * len(rest))]), "val": np.flatnonzero(new_val),
                                         "test": np.sort(np.concatenate([np.flatnonzero(new_test),
                                                                         rest[int(0.8 * len(rest)):]]))}
    labels = [{"style": syn.style[i], "ensemble": syn.ensemble[i], "mode": syn.mode[i], "work_id": syn.work_id[i]}
              for i in range(n_tracks)]
    descriptions = [[Description(t, float(w), "metadata") for t, w in zip(texts, weights, strict=True)]
                    for texts, weights in zip(syn.captions, syn.caption_weights, strict=True)]
    return BenchCatalog(track_ids=np.arange(n_tracks), labels=labels, patches=syn.patches, logmels=syn.logmels,
                        descriptions=descriptions, documents=["" for _ in range(n_tracks)], splits=splits,
                        encoder=encoder, label_words={"style"})


# --- main ----------------------------------------------------------------------------------------

INNER_SPLIT = "inner_heldout"


def add_inner_heldout_split(cat: BenchCatalog, styles: list[str], base: str = "heldout_styles") -> str:
    """A tuning split for unseen styles that never touches ``base``'s test part.

    ``base``'s validation part holds no track of its held-out styles, so choices made on it
    (best step, settings) only see seen styles. This split holds ``styles`` out of ``base``'s
    train and val parts instead: train = train minus those styles, val = val minus them (best
    step), test = every train/val track of those styles (the pseudo-unseen queries) plus the
    remaining val tracks (distractors for the whole-part figure). Score it with the default
    ``--score-part test``: none of its tracks is in ``base``'s test part.
    """
    parts = cat.splits[base]
    held = set(styles)
    missing = held - {str(cat.labels[i].get("style", "")) for i in parts["train"]}
    if missing:
        raise SystemExit(f"not training styles of {base}: {sorted(missing)}")
    is_held = np.array([str(label.get("style", "")) in held for label in cat.labels])
    train, val = parts["train"][~is_held[parts["train"]]], parts["val"][~is_held[parts["val"]]]
    held_rows = np.concatenate([parts["train"][is_held[parts["train"]]], parts["val"][is_held[parts["val"]]]])
    cat.splits[INNER_SPLIT] = {"train": train, "val": val, "test": np.sort(np.concatenate([held_rows, val]))}
    return INNER_SPLIT


def attach_views(cat: BenchCatalog, kinds: list[str], rows: np.ndarray, audio_views: int, backbone: str) -> None:
    """Extra training views for ``rows``: ``audio``, the platform's own timbre views
    (``recommender.services.timbre_views``, computed where not cached, as training the arm does), and
    ``rendition``, other ensembles playing the same excerpt (bench/timbre_views.py; symbolic catalogs only)."""
    from tqdm import tqdm

    from recommender.models import Track
    from recommender.services.embedding_runtime import backbone_extractor
    from recommender.services.timbre_views import timbre_view_features

    cat.patch_views = [[] for _ in cat.track_ids]
    tracks = Track.objects.in_bulk([int(cat.track_ids[i]) for i in rows])
    ordered = [tracks[int(cat.track_ids[i])] for i in rows]
    if "audio" in kinds:
        torch.set_num_threads(os.cpu_count() or 1)  # one backbone pass per view: use every core, then back to 1
        views, report = timbre_view_features(
            tracks=ordered, views=audio_views, backbone=backbone,
            extractor_factory=lambda: backbone_extractor(backbone),
            progress=lambda items: tqdm(items, desc="timbre views", unit="view"))
        torch.set_num_threads(1)
        for path, reason in report.failed:
            print(f"no timbre view of {path}: {reason}")
        for i, track_views in zip(rows, views, strict=True):
            cat.patch_views[i].extend(track_views)
    if "rendition" in kinds:
        from timbre_views import rendition_cache

        renditions = rendition_cache()
        for i, track in zip(rows, ordered, strict=True):
            if renditions.has(f"{track.checksum}-0"):
                cat.patch_views[i].append(renditions.load(f"{track.checksum}-0"))
    print(f"views ({', '.join(kinds)}): {sum(map(len, cat.patch_views))} for "
          f"{sum(1 for v in cat.patch_views if v)} training tracks")


def write_report(report: dict, out: Path, tag: str, stamped: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    latest = out / f"retrieval_quality-{tag}-latest.json"
    latest.write_text(text)
    if stamped:
        (out / f"retrieval_quality-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text)
    return latest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=["default", "heldout_styles"])
    parser.add_argument("--rows", nargs="+", help="only these rows (names as printed)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic catalog (no database)")
    parser.add_argument("--catalog-dir", help="development: a built demo catalog directory instead of the database")
    parser.add_argument("--backbone", default="MTT_musicnn")
    parser.add_argument("--score-part", default="test", choices=["val", "test"],
                        help="'val' scores the validation part (for tuning); the report uses 'test'")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a BenchSettings field")
    parser.add_argument("--inner-heldout", metavar="STYLE,STYLE,...",
                        help=f"tuning for unseen styles: add split {INNER_SPLIT!r}, these training styles of "
                             "heldout_styles held out of its train and val parts (its test part is never used); "
                             f"run with --splits {INNER_SPLIT}")
    parser.add_argument("--llm-rows", action="store_true",
                        help="add the rows on LLM text: templates only, LLM only, templates + LLM, LLM label-free")
    parser.add_argument("--views", metavar="KIND,KIND", default="",
                        help="training views: audio (the platform's timbre views; the default when the product's "
                             "config uses them), rendition (bench/timbre_views.py), none; see --set view_probability=P")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    settings = BenchSettings()
    for item in args.set:
        key, value = item.split("=", 1)
        current = getattr(settings, key)
        parsed = tuple(v for v in value.split(",") if v) if isinstance(current, tuple) else \
            (value.lower() in ("1", "true", "yes") if isinstance(current, bool) else type(current)(value))
        settings = replace(settings, **{key: parsed})
    began = time.perf_counter()
    if args.synthetic:
        cat = load_synthetic_catalog()
    elif args.catalog_dir:
        cat = load_file_catalog(Path(args.catalog_dir), args.backbone)
    else:
        cat = load_database_catalog(args.backbone)
    kinds = [kind for kind in args.views.split(",") if kind and kind != "none"] if args.views else \
        (["audio"] if settings.audio_views and settings.view_probability else [])
    if kinds and not args.synthetic and not args.catalog_dir:
        train_rows = np.unique(np.concatenate([cat.splits[s]["train"] for s in args.splits if s in cat.splits]))
        attach_views(cat, kinds, train_rows, settings.audio_views, args.backbone)
    if args.inner_heldout:
        add_inner_heldout_split(cat, [x for x in args.inner_heldout.split(",") if x])
    print(f"catalog: {len(cat.track_ids)} tracks, {sum(map(len, cat.descriptions))} kept descriptions, "
          f"splits {sorted(cat.splits)}, loaded in {time.perf_counter() - began:.0f} s")
    tag = "synthetic" if args.synthetic else ("files-" if args.catalog_dir else "") + args.score_part
    if sorted(args.splits) != ["default", "heldout_styles"]:
        tag += "-" + "-".join(args.splits)
    report = {"settings": settings.__dict__, "seeds": args.seeds, "scored_part": args.score_part,
              "inner_heldout": args.inner_heldout,
              "synthetic": args.synthetic, "catalog_dir": args.catalog_dir, "splits": {}}
    for split in args.splits:
        if split not in cat.splits:
            print(f"no split named {split!r}; skipped")
            continue
        sizes = {p: len(r) for p, r in cat.splits[split].items()}
        print(f"\nsplit {split}: {sizes}")
        per_seed = [run_split(cat, split, seed, settings, set(args.rows) if args.rows else None, args.score_part,
                              llm_rows=args.llm_rows) for seed in args.seeds]
        summary = summarise(per_seed)
        summary["sizes"] = sizes
        summary["per_seed"] = per_seed
        report["splits"][split] = summary
        print_table(f"{split} ({args.score_part} part, seeds {args.seeds})", summary)
        print_new_instruments(summary)
        write_report(report, Path(args.out), tag)  # after every split, so a cut-off run still leaves its tables
    path = write_report(report, Path(args.out), tag, stamped=True)
    print(f"\nwrote {path} ({time.perf_counter() - began:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
