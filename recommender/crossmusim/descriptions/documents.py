"""The ``document`` source: text that ships with the music, split into usable descriptions.

Scores carry prose in known places: ABC headers (N: notes, H: history, with +:
continuations; O: origin, R: rhythm, S: source, B: book, W:/w: words), Humdrum reference
records (!!!ONB, !!!RNB, !!!HAO notes; !!!AGN genre, !!!AST style, !!!OCY country…; also
without the !!! as the demo catalog writes them), "Title: …"/"Notes: …" lines, and
catalogs add free-text columns (notes, description, history…). Prose fields become
one description each; short structured fields are gathered into one factual sentence;
words (lyrics) are kept as their own candidate so that mining can reject them with
"lyrics only" rather than silently losing them.
"""

from __future__ import annotations

import re

from .text import normalise_text, split_paragraphs, words
from .types import SerialFetchMixin, SourcedDescription, SourceName, SourceResult, TrackInfo

# Field roles: ("prose", kind) becomes a description of its own, ("fact", name) joins the facts
# sentence, ("words", "") is sung text. ABC single letters are case-sensitive (w: and W: are
# both words); Humdrum reference codes and spelled-out names are matched upper-cased.
ABC_ROLES = {
    "N": ("prose", "notes"), "H": ("prose", "history"), "D": ("prose", "discography"),
    "R": ("fact", "tune type"), "O": ("fact", "origin"), "S": ("fact", "source"), "B": ("fact", "book"),
    "A": ("fact", "area"), "G": ("fact", "group"), "C": ("fact", "composer"), "M": ("fact", "meter"),
    "K": ("fact", "key"), "Q": ("fact", "tempo"), "T": ("fact", "title"), "W": ("words", ""), "w": ("words", ""),
}
NAMED_ROLES = {
    # Humdrum reference records (with or without the leading !!!)
    "ONB": ("prose", "notes"), "RNB": ("prose", "notes"), "HAO": ("prose", "history"), "ODE": ("prose", "dedication"),
    "AGN": ("fact", "genre"), "AST": ("fact", "style"), "AMD": ("fact", "mode"), "AMT": ("fact", "meter"),
    "AIN": ("fact", "instruments"), "OCY": ("fact", "country"), "ARE": ("fact", "region"), "ARL": ("fact", "location"),
    "GTL": ("fact", "group"), "GCO": ("fact", "collection"), "COM": ("fact", "composer"), "OTL": ("fact", "title"),
    "OPR": ("fact", "parent work"), "ODT": ("fact", "date"), "OCL": ("fact", "collector"),
    "HTX": ("words", ""), "TXO": ("words", ""), "TXL": ("words", ""),
    # spelled-out names used by catalogs
    "TITLE": ("fact", "title"), "MOVEMENT": ("fact", "title"), "COMPOSER": ("fact", "composer"),
    "COLLECTION": ("fact", "collection"), "ORIGIN": ("fact", "origin"), "RHYTHM": ("fact", "tune type"),
    "GENRE": ("fact", "genre"), "STYLE": ("fact", "style"), "KEY": ("fact", "key"), "METER": ("fact", "meter"),
    "TEMPO": ("fact", "tempo"), "INSTRUMENTS": ("fact", "instruments"), "REGION": ("fact", "region"),
    "NOTES": ("prose", "notes"), "NOTE": ("prose", "notes"), "DESCRIPTION": ("prose", "notes"),
    "HISTORY": ("prose", "history"), "COMMENT": ("prose", "notes"), "COMMENTS": ("prose", "notes"),
    "LYRICS": ("words", ""), "WORDS": ("words", ""), "TEXT": ("words", ""),
}
# "KEY: value", key of one to three words (Humdrum's "!!!" prefix and "@lang" suffix allowed)
FIELD_LINE = re.compile(
    r"^(?:!!!\s*)?([A-Za-z+][A-Za-z0-9_-]{0,15}(?: [A-Za-z0-9_-]{1,15}){0,2})(?:@[\w-]+)?\s*:\s?(.*)$")
CONTEXT_KINDS = {"history", "dedication"}

FREE_TEXT_KEYS = ("description", "notes", "note", "comment", "comments", "history", "about", "summary",
                  "programme_note", "program_note")
MIN_FREE_TEXT_WORDS = 8


def parse_document(text: str) -> list[tuple[str, str, str]]:
    """``(field, perspective, text)`` candidates from a document: field records (ABC, Humdrum, "Name: value"
    lines, in any mix) or plain prose split into paragraphs."""
    lines = normalise_text(text).split("\n") if text else []
    if not lines:
        return []
    records = [FIELD_LINE.match(line) for line in lines]
    if sum(bool(m) for m in records) < max(2, len(lines) // 3):
        return [(f"paragraph:{i}", "", chunk) for i, chunk in enumerate(split_paragraphs(text))]
    prose: list[tuple[str, str, list[str]]] = []
    facts: dict[str, list[str]] = {}
    lyrics: list[str] = []
    last_prose = False
    for line, match in zip(lines, records, strict=True):
        if match is None:
            comment = line.lstrip("!").strip() if line.startswith("!!") else ""
            if comment and len(words(comment)) >= 4:
                prose.append(("comment", "notes", [comment]))
            last_prose = False
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        if key == "+" and last_prose:
            prose[-1][2].append(value)
            continue
        last_prose = False
        if not value or value.startswith("%"):
            continue
        role, name = ABC_ROLES.get(key) or NAMED_ROLES.get(key.upper()) or ("", "")
        if not role and len(words(value)) >= MIN_FREE_TEXT_WORDS:
            role, name = "prose", key.lower()  # an unknown field that holds a sentence or more
        if role == "prose":
            prose.append((key, name, [value]))
            last_prose = True
        elif role == "fact":
            facts.setdefault(name, []).append(value)
        elif role == "words":
            lyrics.append(value)
    out = []
    for index, (key, kind, parts) in enumerate(prose):
        out.append((f"{key}:{index}", "context" if kind in CONTEXT_KINDS else "", " ".join(parts)))
    fact_text = facts_sentence(facts)
    if fact_text:
        out.append(("facts", "style", fact_text))
    if lyrics:
        out.append(("words", "lyrics", "\n".join(lyrics)))
    return out


def facts_sentence(facts: dict[str, list[str]]) -> str:
    """One factual sentence from short score fields, e.g. "Tune type: reel. Origin: Ireland. Key: D."."""
    musical = ("genre", "style", "tune type", "origin", "country", "region", "area", "location", "meter", "key", "mode",
               "tempo", "instruments")
    order = musical + ("composer", "collector", "book", "source", "collection", "group", "date")
    parts = []
    for name in order:
        values = [v for v in dict.fromkeys(facts.get(name, [])) if v]
        if values:
            parts.append(f"{name.capitalize()}: {'; '.join(values)}.")
    # A composer and a title say nothing about the sound: require a musical fact and two facts in all.
    has_musical = any(facts.get(name) for name in musical)
    return " ".join(parts) if has_musical and len(parts) >= 2 else ""


NOT_PROSE_KEYS = {"source", "path", "file", "audio_path", "checksum", "work_id", "url", "urls", "web_url",
                  "source_url", "source_urls", "license", "licence", "copyright"}
PATH_LIKE = re.compile(r"\S+/\S+|\S+\.(?:xml|mxl|krn|abc|mid|midi|wav|mp3|flac|ogg|pdf)\b", re.IGNORECASE)


def free_text_columns(metadata: dict) -> list[tuple[str, str]]:
    """Prose from catalog metadata columns: the known note columns, and any other string that reads as a sentence.

    Identifiers are not prose: file paths, corpus keys, URLs and licence columns are skipped.
    """
    out = []
    for key, value in metadata.items():
        if not isinstance(value, str) or key.lower() in NOT_PROSE_KEYS or PATH_LIKE.search(value):
            continue
        prose_words = re.findall(r"[^\W\d_]{2,}", value)
        if key.lower() in FREE_TEXT_KEYS or len(prose_words) >= MIN_FREE_TEXT_WORDS:
            out.append((key, value))
    return out


class DocumentSource(SerialFetchMixin):
    """Descriptions from ``document_text`` and free-text metadata columns; one unit per track."""

    name = SourceName.DOCUMENT
    UNIT = "document"

    def units(self, track: TrackInfo) -> list[str]:
        return [self.UNIT] if (track.document_text.strip() or free_text_columns(track.metadata)) else []

    def fetch(self, track: TrackInfo, unit: str) -> SourceResult:
        descriptions = []
        for field_name, perspective, text in parse_document(track.document_text):
            descriptions.append(SourcedDescription(text=text, source=self.name, origin=f"document_text#{field_name}",
                                                   perspective=perspective, details={"field": field_name}))
        for key, value in free_text_columns(track.metadata):
            for index, chunk in enumerate(split_paragraphs(value)):
                descriptions.append(SourcedDescription(text=chunk, source=self.name, origin=f"metadata.{key}#{index}",
                                                       details={"field": key}))
        return SourceResult(self.name, unit, descriptions=descriptions)
