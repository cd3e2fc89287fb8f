"""Text preparation for the ablations: removing the label words from descriptions.

The label-free ablation answers "how much of the lift is the label itself": every style,
tune-type, collection and composer word (and the words of any multi-word label) is cut
from the descriptions before training, so the text can only teach what it says about
the music in other words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
_SPLIT = re.compile(r"[\s_\-/+,.;:()]+")
# words that are part of label values but carry no label ("the", "of") are kept
_KEEP = frozenset({"the", "a", "an", "of", "and", "in", "on", "for", "to", "by", "with", "de", "la", "le", "von"})


def label_vocabulary(label_values: Iterable[str]) -> set[str]:
    """Lower-cased words of the given label values, plus simple plural/possessive forms."""
    words: set[str] = set()
    for value in label_values:
        for token in _SPLIT.split(str(value).lower()):
            token = token.strip("'’")
            if len(token) < 2 or token in _KEEP:
                continue
            words |= {token, token + "s", token + "es", token + "'s", token + "’s"}
            if token.endswith("s"):
                words.add(token[:-1])
    return words


def strip_label_words(text: str, label_values: Iterable[str] | set[str]) -> str:
    """Remove every word of ``label_values`` (style, tune type, collection, composer…) from ``text``."""
    vocabulary = label_values if isinstance(label_values, set) else label_vocabulary(label_values)

    def drop(match: re.Match) -> str:
        return "" if match.group(0).lower() in vocabulary else match.group(0)

    stripped = _WORD.sub(drop, text)
    return re.sub(r"\s{2,}", " ", re.sub(r"\s+([,.;:!?])", r"\1", stripped)).strip()


# Chosen on the validation split (bench/retrieval_quality.py): captions written from the
# instrumentation perspective teach the model timbre — the shortcut that cross-instrument
# retrieval punishes — so they are left out of training, and instrument names are cut from
# the other captions (validation cross-instrument style P@10 0.41 -> 0.52).
DROPPED_PERSPECTIVES = ("instrumentation",)


def instrument_vocabulary(labels: Iterable[dict]) -> set[str]:
    """Words of every instrument and ensemble name in the catalog's labels."""
    names: set[str] = set()
    for label in labels:
        names |= {str(n) for n in (label.get("instruments") or [])}
        if label.get("ensemble"):
            names.add(str(label["ensemble"]))
    return label_vocabulary(n for n in names if n)


def training_captions(descriptions: Iterable[tuple[str, float, str]], instrument_words: set[str],
                      drop_perspectives: tuple[str, ...] = DROPPED_PERSPECTIVES) -> tuple[list[str], list[float]]:
    """(texts, scores) to train on from one track's kept (text, score, perspective) descriptions."""
    texts, scores = [], []
    for text, score, perspective in descriptions:
        if perspective in drop_perspectives:
            continue
        stripped = strip_label_words(text, instrument_words) if instrument_words else text
        if stripped:
            texts.append(stripped)
            scores.append(float(score))
    return texts, scores
