"""One call that computes every column of the retrieval table for one embedding of a test set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import different_label_mask, ranking_scores, same_label_matrix, text_to_audio_recall

METRIC_COLUMNS = (
    "style_p1", "style_p10", "style_map", "style_ndcg10", "xinst_style_p10", "xinst_style_map",
    "instrument_p10", "mode_p10", "mode_p10_within_style", "t2a_r1", "t2a_r5", "t2a_r10",
)


@dataclass
class EvalLabels:
    """Labels of the evaluated tracks, aligned with the embedding rows."""

    style: Sequence[str]
    ensemble: Sequence[str]
    mode: Sequence[str]
    work_id: Sequence[str] | None = None  # renditions of one work are not counted as each other's neighbours

    def __len__(self) -> int:
        return len(self.style)


def evaluate_embeddings(audio_embeddings: np.ndarray, labels: EvalLabels, text_embeddings: np.ndarray | None = None,
                        text_targets: Sequence[int] | None = None,
                        queries: Sequence[int] | None = None,
                        candidates: Sequence[int] | None = None) -> dict[str, float]:
    """All audio->audio columns, plus text->audio recall when text query embeddings are given.

    ``queries`` (row indices) lets only some tracks ask while every track is a candidate, e.g.
    unseen-style queries against a catalog that also holds seen-style tracks; ``candidates`` (row
    indices) keeps only those tracks as answers, e.g. new-instrument queries searching the
    seen-instrument tracks alone.
    """
    n = len(labels)
    if audio_embeddings.shape[0] != n:
        raise ValueError(f"{audio_embeddings.shape[0]} embeddings for {n} labelled tracks")
    base = np.ones((n, n), dtype=bool)
    if candidates is not None:
        base[:, np.setdiff1d(np.arange(n), np.asarray(candidates, dtype=np.int64))] = False
    if labels.work_id is not None:
        base &= ~same_label_matrix(labels.work_id)
    cross = base & different_label_mask(labels.ensemble)
    style = ranking_scores(audio_embeddings, labels.style, base, queries)
    cross_style = ranking_scores(audio_embeddings, labels.style, cross, queries)
    result = {
        "style_p1": style.precision_at_1,
        "style_p10": style.precision_at_10,
        "style_map": style.mean_average_precision,
        "style_ndcg10": style.ndcg_at_10,
        "xinst_style_p10": cross_style.precision_at_10,
        "xinst_style_map": cross_style.mean_average_precision,
        "instrument_p10": ranking_scores(audio_embeddings, labels.ensemble, base, queries).precision_at_10,
        "mode_p10": ranking_scores(audio_embeddings, labels.mode, base, queries).precision_at_10,
        # mode among the query's own style only: style and mode are correlated (most chorales and
        # reels are major), so plain mode P@10 rises with style retrieval; this one does not
        "mode_p10_within_style": ranking_scores(audio_embeddings, labels.mode, base & same_label_matrix(labels.style),
                                                queries).precision_at_10,
    }
    if text_embeddings is not None and text_targets is not None and len(text_targets):
        recall = text_to_audio_recall(text_embeddings, audio_embeddings, text_targets, ks=(1, 5, 10))
        result.update({"t2a_r1": recall[1], "t2a_r5": recall[5], "t2a_r10": recall[10]})
    return result
