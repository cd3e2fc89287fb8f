"""The one caption pipeline: from a track's kept descriptions to the texts a model trains on.

:func:`training_captions` is what the platform's training service trains with, and what
bench/retrieval_quality.py builds every CrossMuSim row's text with (its ablations are
arguments of it, or :func:`label_free_captions` on its output), so the bench measures the
product's text.

The label-free ablation answers "how much of the lift is the label itself": every style,
tune-type, collection and composer word (and the words of any multi-word label) is cut
from the descriptions before training, so the text can only teach what it says about
the music in other words.
"""

from __future__ import annotations

import functools
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


# --- mode: "a label no text mentions" -----------------------------------------------------------
#
# The metadata templates name the key and mode ("a reel in G major", "in a minor key") and pick
# their mood adjectives from a table keyed by mode (every adjective of templates.MOODS belongs to
# exactly one of major / minor / other), so a model trained on them can learn mode from the text.
# ``strip_mode_words`` takes both out, so that mode P@10 measures what the audio alone carries.

MODE_NAMES = ("major", "minor", "dorian", "mixolydian", "lydian", "phrygian", "aeolian", "ionian", "locrian")
_MODE = "(?i:" + "|".join(MODE_NAMES) + ")"
_NOTE = r"[A-G](?:[#♯♭]|b(?![a-z])|[\s-]?(?:flat|sharp))?"  # a capital note name: "in a minor key" is no key
_MODE_PATTERNS = (
    # "in the key of G major", "in G major", "in F# minor", "in E dorian", "in Bb major tonality"
    re.compile(rf"\b(?:in|of)\s+(?:the\s+key\s+of\s+)?{_NOTE}[\s-]+{_MODE}(?:[\s-]+(?i:key|mode|tonality))?\b"),
    # "in a minor key", "in the Dorian mode"
    re.compile(rf"\bin\s+(?:a|an|the)\s+{_MODE}[\s-]+(?:key|mode|tonality)\b", re.IGNORECASE),
    # a key name on its own: "G major", "Bb minor"; German "G-Dur", "fis-Moll"
    re.compile(rf"\b{_NOTE}[\s-]+{_MODE}\b"),
    re.compile(r"\b[A-Ha-h](?:is|es|s)?-(?:[Dd]ur|[Mm]oll)\b"),
    # what is left: the mode names themselves, "major-key", "modal", "modally"
    re.compile(rf"\b{_MODE}(?:-key)?\b|\bmodal(?:ly)?\b", re.IGNORECASE),
)
_WORDS = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@functools.cache
def mood_vocabulary() -> frozenset[str]:
    """The templates' mood adjectives: each is chosen by the track's mode (see templates.MOODS).

    Cached: ``strip_mode_words`` asks for it once per caption."""
    from .descriptions.templates import MOODS

    return frozenset(word.lower() for words in MOODS.values() for word in words)


_CUT = "\x00"  # marks where words were removed, so that only the articles before a cut are re-agreed


def _tidy(text: str) -> str:
    """Repair the punctuation and articles that removed words leave behind."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(rf"\b(an?)((?:[\s,]*{_CUT})+[\s,]*)(?=(\w))",  # "an [earthy, wild] reel" -> "a reel"
                  lambda m: (m.group(1)[0] + ("n" if m.group(3).lower() in "aeiou" else "")) + m.group(2),
                  text, flags=re.IGNORECASE)
    text = text.replace(_CUT, "")
    text = re.sub(r"\b(and|or|in|of)\s*(?=[,.;:!?]|$)", "", text)  # "bright and ." / "a reel in ."
    text = re.sub(r"\b(an?|the)\s*[,;:]\s*", r"\1 ", text, flags=re.IGNORECASE)  # "A , reel"
    text = re.sub(r"(\s*,)+\s*(?=[,.;:!?]|$)", "", text)  # dangling commas
    text = re.sub(r"\s+(?=[,.;:!?])", "", text)
    text = re.sub(r"[,;:]+(?=[.!?]|$)", "", text)
    text = re.sub(r"^[\s,;:]*(?:and\s+|or\s+)?[\s,;:]*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text[:1].upper() + text[1:] if text[:1].islower() else text


def strip_mode_words(text: str, moods: bool = True) -> str:
    """Remove key and mode names ("in G major", "minor", "Dorian", "modal") and, with ``moods``,
    the templates' mode-chosen mood adjectives, so that the text no longer says the mode.

    Callers pass ``moods`` for captions of the ``mood`` perspective only: the same adjectives
    appear in fixed phrases of other perspectives ("a lively pub session", "a driving, even
    stream of quavers") where the tune type, not the mode, chose them.
    """
    original = text
    for pattern in _MODE_PATTERNS:
        text = pattern.sub(_CUT, text)
    if moods:
        vocabulary = mood_vocabulary()
        text = _WORDS.sub(lambda m: _CUT if m.group(0).lower() in vocabulary else m.group(0), text)
    return original if text == original else _tidy(text)


# Chosen on the validation part (bench/retrieval_quality.py --score-part val, default split,
# database catalog of 2,000 tracks with mined descriptions, seeds 0-2): with mode words removed,
# cross-instrument style P@10 0.505 -> 0.522 (higher on every seed, +0.015 to +0.020) while
# mode P@10 stayed where it was (+0.077 -> +0.074 over the raw features). So the platform's
# CrossMuSim trains without them; the bench keeps a "mode words kept" row as the ablation.
STRIP_MODE_WORDS = True


def training_captions(descriptions: Iterable[tuple[str, float, str]], instrument_words: set[str],
                      drop_perspectives: tuple[str, ...] = DROPPED_PERSPECTIVES,
                      mode_words: bool = not STRIP_MODE_WORDS) -> tuple[list[str], list[float]]:
    """(texts, scores) to train on from one track's kept (text, score, perspective) descriptions.

    ``mode_words=False`` removes key and mode names, and the mood adjectives of ``mood``
    captions (:func:`strip_mode_words`).
    """
    texts, scores = [], []
    for text, score, perspective in descriptions:
        if perspective in drop_perspectives:
            continue
        stripped = strip_label_words(text, instrument_words) if instrument_words else text
        if not mode_words:
            stripped = strip_mode_words(stripped, moods=perspective == "mood")
        if stripped:
            texts.append(stripped)
            scores.append(float(score))
    return texts, scores


# Label-free captions with fewer words than this say next to nothing once the labels are cut
# ("A ." from "A reel."); they are dropped rather than trained on as near-empty text.
LABEL_FREE_MIN_WORDS = 3


def label_free_captions(texts: Iterable[str], scores: Iterable[float], label_words: set[str],
                        min_words: int = LABEL_FREE_MIN_WORDS) -> tuple[list[str], list[float]]:
    """The label-free ablation's (texts, scores): every label word cut from the training captions
    (:func:`training_captions`' output), and what is left kept only if it has ``min_words`` words."""
    kept_texts, kept_scores = [], []
    for text, score in zip(texts, scores, strict=True):
        stripped = strip_label_words(text, label_words)
        if len(stripped.split()) >= min_words:
            kept_texts.append(stripped)
            kept_scores.append(float(score))
    return kept_texts, kept_scores
