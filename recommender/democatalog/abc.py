"""Raw ABC text: split multi-tune files at ``X:`` and read the header fields music21 drops.

music21's ABC reader keeps the title, meter and key but loses ``R:`` (tune type),
``B:`` (book), ``O:`` (origin), ``N:`` (notes), ``H:`` (history) and ``Z:``, which are
exactly the labels and the document text the demo catalog needs; so they are read here
from the text itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER_LINE = re.compile(r"^([A-Za-z]):\s?(.*)$")
DOCUMENT_FIELDS = ("T", "R", "B", "O", "N", "H")


@dataclass
class AbcTune:
    """One tune of an ABC file: its ``X:`` number, header fields (in order) and full text."""

    number: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""
    body: str = ""

    def first(self, name: str, default: str = "") -> str:
        values = [v for v in self.fields.get(name, []) if v]
        return values[0] if values else default

    @property
    def title(self) -> str:
        return self.first("T", f"Tune {self.number}")


# Some Essen files are UTF-8 text that still holds DOS code page 437 bytes (\x94 for "ö").
C1_AS_CP437 = {code: bytes([code]).decode("cp437") for code in range(0x80, 0xA0)}


def _clean(value: str) -> str:
    value = value.translate(C1_AS_CP437).strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].strip()
    return value.replace('" "', "; ").replace('"', "").strip()


def split_tunes(text: str) -> list[AbcTune]:
    """Split an ABC file into tunes at each ``X:`` line; the file header before the first is dropped.

    The header of a tune ends at its ``K:`` line; everything after it is the body.
    """
    tunes: list[AbcTune] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("X:"):
            if current is not None:
                tunes.append(_read_tune(current))
            current = [line]
        elif current is not None:
            current.append(line)
    if current is not None:
        tunes.append(_read_tune(current))
    return tunes


def _read_tune(lines: list[str]) -> AbcTune:
    while lines and not lines[-1].strip():
        lines.pop()
    tune = AbcTune(number=lines[0][2:].strip(), text="\n".join(lines) + "\n")
    body_start = len(lines)
    for index, line in enumerate(lines[1:], start=1):
        match = HEADER_LINE.match(line)
        if not match:
            if line.startswith("%"):
                continue
            body_start = index
            break
        name, value = match.group(1), _clean(match.group(2))
        tune.fields.setdefault(name, []).append(value)
        if name == "K":
            body_start = index + 1
            break
    tune.body = "\n".join(lines[body_start:])
    return tune


def document_lines(tune: AbcTune) -> list[str]:
    """The tune's own text, field by field (``T:``, ``R:``, ``B:``, ``O:``, ``N:``, ``H:``)."""
    lines = []
    for name in DOCUMENT_FIELDS:
        for value in tune.fields.get(name, []):
            if value:
                lines.append(f"{name}: {value}")
    return lines


def body_fingerprint(tune: AbcTune) -> str:
    """The tune's notes with spacing, comments and annotations removed: equal for copies of one transcription."""
    body = re.sub(r"%.*", "", tune.body)
    body = re.sub(r'"[^"]*"', "", body)
    return re.sub(r"\s+|\\", "", body)
