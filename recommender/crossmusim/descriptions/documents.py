"""The ``document`` source: text that ships with the music, split into usable descriptions.

Scores carry prose in known places: ABC headers (N: notes, H: history, with +:
continuations; O: origin, R: rhythm, S: source, B: book, W:/w: words), Humdrum reference
records (!!!ONB, !!!RNB, !!!HAO notes; !!!AGN genre, !!!AST style, !!!OCY country…),
and catalogs add free-text columns (notes, description, history…). Prose fields become
one description each; short structured fields are gathered into one factual sentence;
words (lyrics) are kept as their own candidate so that mining can reject them with
"lyrics only" rather than silently losing them.
"""

from __future__ import annotations

import re

from .text import normalise_text, split_paragraphs, words
from .types import SerialFetchMixin, SourcedDescription, SourceName, SourceResult, TrackInfo

ABC_PROSE = {"N": "notes", "H": "history", "D": "discography", "F": "file notes"}
ABC_FACTS = {"R": "rhythm", "O": "origin", "S": "source", "B": "book", "A": "area", "G": "group", "C": "composer",
             "M": "meter", "K": "key", "Q": "tempo", "T": "title"}
ABC_WORDS = {"W", "w"}
ABC_FIELD = re.compile(r"^([A-Za-z+]):\s?(.*)$")

HUMDRUM_PROSE = {"ONB": "notes", "RNB": "notes", "HAO": "history", "ODE": "dedication", "OCL": "collector",
                 "ODT": "date", "PPP": "publication"}
HUMDRUM_FACTS = {"AGN": "genre", "AST": "style", "AMD": "mode", "AMT": "meter", "AIN": "instruments",
                 "OCY": "country", "ARE": "region", "ARL": "location", "GTL": "group", "GCO": "collection",
                 "COM": "composer", "OTL": "title", "OPR": "parent work"}
HUMDRUM_WORDS = {"HTX", "TXO", "TXL"}
HUMDRUM_RECORD = re.compile(r"^!!!\s*([A-Za-z0-9@-]+?)(?:@[\w-]+)?\s*:\s*(.*)$")

FREE_TEXT_KEYS = ("description", "notes", "note", "comment", "comments", "history", "about", "summary",
                  "programme_note", "program_note")
MIN_FREE_TEXT_WORDS = 8


def parse_document(text: str) -> list[tuple[str, str, str]]:
    """``(field, perspective, text)`` candidates from a document (ABC, Humdrum, or plain prose)."""
    lines = normalise_text(text).split("\n") if text else []
    if not lines:
        return []
    if any(HUMDRUM_RECORD.match(line) for line in lines):
        return _parse_humdrum(lines)
    if sum(bool(ABC_FIELD.match(line)) for line in lines) >= max(2, len(lines) // 3):
        return _parse_abc(lines)
    return [(f"paragraph:{i}", "", chunk) for i, chunk in enumerate(split_paragraphs(text))]


def _parse_abc(lines: list[str]) -> list[tuple[str, str, str]]:
    prose: list[tuple[str, list[str]]] = []
    facts: dict[str, list[str]] = {}
    lyrics: list[str] = []
    last_prose = False
    for line in lines:
        match = ABC_FIELD.match(line)
        if not match:
            last_prose = False
            continue
        key, value = match.group(1), match.group(2).strip()
        if key == "+" and last_prose and prose:
            prose[-1][1].append(value)
            continue
        last_prose = False
        if not value or value.startswith("%"):
            continue
        if key in ABC_PROSE:
            prose.append((key, [value]))
            last_prose = True
        elif key in ABC_WORDS:
            lyrics.append(value)
        elif key in ABC_FACTS:
            facts.setdefault(ABC_FACTS[key], []).append(value)
    return _assemble(prose, ABC_PROSE, facts, lyrics, prefix="abc")


def _parse_humdrum(lines: list[str]) -> list[tuple[str, str, str]]:
    prose: list[tuple[str, list[str]]] = []
    facts: dict[str, list[str]] = {}
    lyrics: list[str] = []
    for line in lines:
        match = HUMDRUM_RECORD.match(line)
        if match:
            key, value = match.group(1).upper(), match.group(2).strip()
            if not value:
                continue
            if key in HUMDRUM_PROSE:
                prose.append((key, [value]))
            elif key in HUMDRUM_WORDS:
                lyrics.append(value)
            elif key in HUMDRUM_FACTS:
                facts.setdefault(HUMDRUM_FACTS[key], []).append(value)
        elif line.startswith("!!") and not line.startswith("!!!"):
            comment = line.lstrip("!").strip()
            if len(words(comment)) >= 4:
                prose.append(("comment", [comment]))
    return _assemble(prose, HUMDRUM_PROSE, facts, lyrics, prefix="humdrum")


def _assemble(prose, prose_names, facts, lyrics, *, prefix: str) -> list[tuple[str, str, str]]:
    out = []
    for index, (key, parts) in enumerate(prose):
        text = " ".join(parts)
        out.append((f"{prefix}:{key}:{index}", _perspective_of(prose_names.get(key, key)), text))
    fact_text = facts_sentence(facts)
    if fact_text:
        out.append((f"{prefix}:facts", "style", fact_text))
    if lyrics:
        out.append((f"{prefix}:words", "lyrics", "\n".join(lyrics)))
    return out


def _perspective_of(kind: str) -> str:
    return {"history": "context", "dedication": "context", "collector": "context", "date": "context"}.get(kind, "")


def facts_sentence(facts: dict[str, list[str]]) -> str:
    """One factual sentence from short score fields, e.g. "Rhythm: reel. Origin: Ireland. Key: D."."""
    order = ("genre", "style", "rhythm", "origin", "country", "region", "area", "location", "meter", "key", "mode",
             "tempo", "instruments", "book", "source", "collection", "group")
    parts = []
    for name in order:
        values = [v for v in dict.fromkeys(facts.get(name, [])) if v]
        if values:
            parts.append(f"{name.capitalize()}: {'; '.join(values)}.")
    # Facts alone (a meter, a key) say little; require at least two of them.
    return " ".join(parts) if len(parts) >= 2 else ""


def free_text_columns(metadata: dict) -> list[tuple[str, str]]:
    """Prose from catalog metadata columns: the known note columns, and any other string of a sentence or more."""
    out = []
    for key, value in metadata.items():
        if not isinstance(value, str) or value.strip().startswith(("http://", "https://")):
            continue
        known = key.lower() in FREE_TEXT_KEYS
        if known or len(words(value)) >= MIN_FREE_TEXT_WORDS:
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
