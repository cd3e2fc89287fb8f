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
