"""Retrieval metrics over embeddings: each track queries the others by cosine similarity.

Relevance is binary: a candidate is relevant when it shares the query's label (style,
ensemble, mode). ``candidate_mask`` restricts which candidates count for a query — the
cross-instrument metrics keep only candidates whose instrument ensemble differs from the
query's, because timbre is the shortcut every audio-only embedding takes. The query itself
is never a candidate. Queries with no relevant candidate are left out of the averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cosine_similarity_matrix(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def same_label_matrix(labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=object)
    return labels[:, None] == labels[None, :]


def different_label_mask(labels) -> np.ndarray:
    """Candidate mask for cross-group metrics: only candidates whose label differs from the query's."""
    return ~same_label_matrix(labels)


@dataclass(frozen=True)
class RankingScores:
    precision_at_1: float
    precision_at_10: float
    mean_average_precision: float
    ndcg_at_10: float
    n_queries: int


def _ranked_relevance(similarity: np.ndarray, relevance: np.ndarray, candidate_mask: np.ndarray | None,
                      queries=None):
    """Yield the relevance vector of each query's candidates, best-scored first."""
    n = similarity.shape[0]
    for i in (range(n) if queries is None else np.asarray(queries, dtype=np.int64)):
        candidates = np.ones(n, dtype=bool) if candidate_mask is None else candidate_mask[i].copy()
        candidates[i] = False
        idx = np.flatnonzero(candidates)
        if idx.size == 0:
            continue
        # stable tie-break on index so that results never depend on sort implementation details
        order = idx[np.lexsort((idx, -similarity[i, idx]))]
        yield relevance[i, order].astype(np.float64)


def precision_at_k(ranked: np.ndarray, k: int) -> float:
    """Fraction of relevant items among the top k (denominator min(k, #candidates))."""
    top = ranked[:k]
    return float(top.mean()) if top.size else 0.0


def average_precision(ranked: np.ndarray) -> float:
    hits = np.flatnonzero(ranked)
    if hits.size == 0:
        return 0.0
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))


def ndcg_at_k(ranked: np.ndarray, k: int) -> float:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = ranked[:k]
    dcg = float((top * discounts[: top.size]).sum())
    ideal = np.sort(ranked)[::-1][:k]
    idcg = float((ideal * discounts[: ideal.size]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def ranking_scores(embeddings: np.ndarray, labels, candidate_mask: np.ndarray | None = None,
                   queries=None) -> RankingScores:
    """P@1, P@10, mAP and nDCG@10 of label-matching retrieval among the tracks themselves.

    ``queries`` (row indices) restricts which tracks ask; every track stays a candidate.
    """
    similarity = cosine_similarity_matrix(embeddings)
    relevance = same_label_matrix(labels)
    rows = [r for r in _ranked_relevance(similarity, relevance, candidate_mask, queries) if r.any()]
    if not rows:
        return RankingScores(0.0, 0.0, 0.0, 0.0, 0)
    return RankingScores(
        precision_at_1=float(np.mean([precision_at_k(r, 1) for r in rows])),
        precision_at_10=float(np.mean([precision_at_k(r, 10) for r in rows])),
        mean_average_precision=float(np.mean([average_precision(r) for r in rows])),
        ndcg_at_10=float(np.mean([ndcg_at_k(r, 10) for r in rows])),
        n_queries=len(rows),
    )


def text_to_audio_recall(text_embeddings: np.ndarray, audio_embeddings: np.ndarray, targets,
                         ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Recall@k of text queries: query q's target is audio row ``targets[q]``."""
    t = np.asarray(text_embeddings, dtype=np.float64)
    a = np.asarray(audio_embeddings, dtype=np.float64)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    scores = t @ a.T
    targets = np.asarray(targets)
    target_scores = scores[np.arange(len(targets)), targets]
    # rank = number of audio rows scored strictly higher than the target (ties favour the target's index order)
    rank = (scores > target_scores[:, None]).sum(1)
    return {k: float(np.mean(rank < k)) for k in ks}
