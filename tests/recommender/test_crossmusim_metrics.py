"""Retrieval metrics on hand-built embeddings whose answers are known."""

import math

import numpy as np
import pytest

from recommender.crossmusim.evaluate import EvalLabels, evaluate_embeddings
from recommender.crossmusim.metrics import average_precision, ndcg_at_k, ranking_scores, text_to_audio_recall


def test_average_precision_and_ndcg_worked_numbers():
    ranked = np.array([1, 0, 1, 0], dtype=float)
    assert average_precision(ranked) == pytest.approx((1 / 1 + 2 / 3) / 2)
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, 10) == pytest.approx(expected)


def test_perfect_and_worst_style_retrieval():
    # two tight clusters, one per style
    emb = np.array([[1, 0], [0.99, 0.1], [0.98, 0.15], [0, 1], [0.1, 0.99], [0.15, 0.98]])
    good = ranking_scores(emb, ["a", "a", "a", "b", "b", "b"])
    assert good.precision_at_1 == 1.0 and good.mean_average_precision == 1.0 and good.ndcg_at_10 == 1.0
    # P@10 over 5 candidates: 2 relevant of 5
    assert good.precision_at_10 == pytest.approx(2 / 5)
    bad = ranking_scores(emb, ["a", "b", "c", "a", "b", "c"])
    assert bad.precision_at_1 == 0.0


def _timbre_world():
    """Embeddings clustered by instrument (timbre), style only visible across instruments."""
    # tracks: (style, ensemble); the embedding puts each ensemble in its own corner
    style = ["x", "y", "x", "y"]
    ensemble = ["fiddle", "fiddle", "piano", "piano"]
    emb = np.array([[1.0, 0.0, 0.1], [1.0, 0.0, -0.1], [0.0, 1.0, 0.1], [0.0, 1.0, -0.1]])
    return emb, EvalLabels(style=style, ensemble=ensemble, mode=["major"] * 4)


def test_cross_instrument_metrics_only_count_other_ensembles():
    emb, labels = _timbre_world()
    result = evaluate_embeddings(emb, labels)
    # plain style P@1: the nearest neighbour is the same-instrument track of the other style
    assert result["style_p1"] == 0.0
    # cross-instrument: each query sees only the two other-ensemble tracks; the same-style one ranks first
    assert result["xinst_style_p10"] == pytest.approx(0.5)  # 1 relevant of 2 candidates
    assert result["xinst_style_map"] == pytest.approx(1.0)
    assert result["instrument_p10"] == pytest.approx(1 / 3)
    assert result["mode_p10"] == pytest.approx(1.0)


def test_cross_instrument_excludes_same_ensemble_candidates():
    # a same-ensemble, same-style candidate would make P@1 perfect; cross-instrument must ignore it
    emb = np.array([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99]])
    labels = EvalLabels(style=["x", "x", "x", "y"], ensemble=["e1", "e1", "e2", "e2"], mode=["m"] * 4)
    result = evaluate_embeddings(emb, labels)
    # query 0: candidates 2 (x) and 3 (y) tie near zero; query 3 (y): candidates 0, 1 are both x -> no relevant
    scores = ranking_scores(emb, labels.style, ~np.equal.outer(np.array(labels.ensemble), np.array(labels.ensemble)))
    assert scores.n_queries == 3
    assert result["xinst_style_p10"] == pytest.approx(scores.precision_at_10)
    assert result["style_p1"] == pytest.approx(2 / 3)  # query 2's nearest is 3 (other style)


def test_same_work_is_not_a_neighbour():
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.9, 0.3], [0.0, 1.0]])
    style, ensemble, mode = ["x", "x", "y", "x"], ["a", "b", "a", "b"], ["m"] * 4
    # tracks 0 and 1 are renditions of one work: each other's nearest neighbour, but not a fair match
    with_work = evaluate_embeddings(emb, EvalLabels(style, ensemble, mode, work_id=["w1", "w1", "w2", "w3"]))
    without = evaluate_embeddings(emb, EvalLabels(style, ensemble, mode))
    assert with_work["style_p1"] == 0.0
    assert without["style_p1"] == pytest.approx(2 / 3)


def test_text_to_audio_recall():
    audio = np.eye(4)
    text = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0.1], [0, 0, 0.2, 1.0]])
    recall = text_to_audio_recall(text, audio, targets=[0, 1, 3], ks=(1, 2))
    assert recall[1] == pytest.approx(2 / 3)
    assert recall[2] == pytest.approx(2 / 3)
    result = evaluate_embeddings(audio, EvalLabels(["a"] * 4, ["e"] * 4, ["m"] * 4), text, [0, 1, 3])
    assert result["t2a_r1"] == pytest.approx(2 / 3) and result["t2a_r10"] == 1.0


def test_queries_restrict_who_asks_but_every_track_stays_a_candidate():
    # two unseen-style tracks "u" and two seen-style distractors "s", each nearer to either u than the other u
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.8, 0.2]])
    labels = EvalLabels(style=["u", "u", "s", "s"], ensemble=["a", "b", "c", "d"], mode=["major"] * 4)
    among_themselves = evaluate_embeddings(emb[:2], EvalLabels(style=["u", "u"], ensemble=["a", "b"],
                                                               mode=["major"] * 2))
    whole = evaluate_embeddings(emb, labels, queries=[0, 1])
    assert among_themselves["style_p1"] == 1.0
    assert whole["style_p1"] == 0.0 and whole["style_p10"] == pytest.approx(1 / 3)
    scores = ranking_scores(emb, labels.style, queries=[0])
    assert scores.n_queries == 1 and scores.precision_at_1 == 0.0
    assert ranking_scores(emb, labels.style, queries=[3]).precision_at_1 == 1.0


def test_candidates_restrict_the_answers_to_some_tracks():
    # new-instrument queries 0, 1 (style u) search the seen-instrument tracks 2-4 only: 1 is 0's nearest
    # track, but only 4 (style u, ranked last of the seen tracks) counts
    emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.3], [0.8, 0.5], [0.0, 1.0]])
    labels = EvalLabels(style=["u", "u", "s", "s", "u"], ensemble=["a", "b", "c", "c", "d"], mode=["major"] * 5)
    free = evaluate_embeddings(emb, labels, queries=[0, 1])
    seen_only = evaluate_embeddings(emb, labels, queries=[0, 1], candidates=[2, 3, 4])
    assert free["style_p1"] == 1.0
    assert seen_only["style_p1"] == 0.0 and seen_only["style_p10"] == pytest.approx(1 / 3)
    assert seen_only["style_map"] == pytest.approx(1 / 3)


def test_mode_within_style_only_ranks_the_query_s_own_style():
    emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0], [0.1, 0.99], [0.2, 0.98]])
    labels = EvalLabels(style=["a", "a", "a", "b", "b", "b"], ensemble=list("uvwxyz"),
                        mode=["major", "major", "minor", "minor", "minor", "major"])
    result = evaluate_embeddings(emb, labels)
    # every track: 2 same-mode tracks among its 5 candidates
    assert result["mode_p10"] == pytest.approx(2 / 5)
    # own style only: 1 same-mode track among 2 candidates; the odd-mode track of each style has none (left out)
    assert result["mode_p10_within_style"] == pytest.approx(1 / 2)
