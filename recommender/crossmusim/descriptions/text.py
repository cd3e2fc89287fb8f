"""Text normalisation and splitting shared by the sources and by mining."""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]{1,200}>")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - "})
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u00b7>]+|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def normalise_text(text: str) -> str:
    """Unicode NFKC, HTML entities and stray tags removed, typographic quotes made plain, spaces collapsed.

    Line breaks are kept (one per line, blank lines dropped): mining needs the line
    structure to tell verse (lyrics) from prose.
    """
    text = unicodedata.normalize("NFKC", html.unescape(text or ""))
    text = _TAG.sub(" ", text).translate(_QUOTES)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    for line in text.split("\n"):
        line = _BULLET.sub("", _SPACES.sub(" ", line)).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:['-][^\W_]+)*", text.casefold())


def split_paragraphs(text: str, *, target_words: int = 80, min_words: int = 12) -> list[str]:
    """Group the lines of an extracted page into paragraph-sized chunks of about ``target_words`` words.

    Short lines (headings, captions) are merged into the next chunk rather than dropped,
    so that a heading still gives context; a line longer than the target is split at
    sentence ends.
    """
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    pieces: list[str] = []
    for line in normalise_text(text).split("\n"):
        if len(words(line)) > target_words:
            pieces.extend(_pack_sentences(_SENTENCE_END.split(line), target_words))
        else:
            pieces.append(line)
    for piece in pieces:
        n = len(words(piece))
        if current and count + n > target_words and count >= min_words:
            chunks.append(" ".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        if chunks and count < min_words and len(words(chunks[-1])) + count <= target_words * 1.5:
            chunks[-1] = chunks[-1] + " " + " ".join(current)
        else:
            chunks.append(" ".join(current))
    return chunks


def _pack_sentences(sentences: list[str], target_words: int) -> list[str]:
    packed: list[str] = []
    current: list[str] = []
    count = 0
    for sentence in sentences:
        n = len(words(sentence))
        if current and count + n > target_words:
            packed.append(" ".join(current))
            current, count = [], 0
        current.append(sentence)
        count += n
    if current:
        packed.append(" ".join(current))
    return packed
