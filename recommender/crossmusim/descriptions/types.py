"""Inputs and outputs shared by every description source and by mining.

A source turns one ``TrackInfo`` and one unit of work (a URL, a prompt perspective, the
track's document) into a ``SourceResult``: zero or more ``SourcedDescription`` plus an
error when the unit failed. The Django shell stores both, so that a failure is recorded
with its reason and a re-run knows which units are already done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol


class SourceName:
    """The provenance of a description; ``METADATA`` is the offline template writer, never an LLM."""

    WEB = "web"
    DOCUMENT = "document"
    LLM = "llm"
    METADATA = "metadata"
    ALL = (WEB, DOCUMENT, LLM, METADATA)


class Perspective:
    """What a description talks about (LLM prompts and templates are written per perspective)."""

    STYLE = "style"
    MOOD = "mood"
    INSTRUMENTATION = "instrumentation"
    RHYTHM = "rhythm"
    CONTEXT = "context"
    ALL = (STYLE, MOOD, INSTRUMENTATION, RHYTHM, CONTEXT)


@dataclass(frozen=True)
class TrackInfo:
    """What the sources may know about a track: its catalog fields, labels, shipped text and URLs."""

    track_id: int | str
    title: str
    composer: str = ""
    collection: str = ""
    labels: dict = field(default_factory=dict)
    document_text: str = ""
    metadata: dict = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    def label(self, name: str, default: str = "") -> str:
        value = self.labels.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    @property
    def instruments(self) -> list[str]:
        value = self.labels.get("instruments")
        if isinstance(value, list | tuple):
            return [str(v) for v in value if str(v).strip()]
        if isinstance(value, str) and value.strip():
            return [part.strip() for part in value.replace("+", ",").split(",") if part.strip()]
        ensemble = self.labels.get("ensemble")
        if isinstance(ensemble, str) and ensemble.strip():
            return [part.strip() for part in ensemble.replace("+", ",").split(",") if part.strip()]
        return []


@dataclass(frozen=True)
class SourcedDescription:
    """One candidate text with its provenance (``origin``: URL, prompt id or document field)."""

    text: str
    source: str
    origin: str
    perspective: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class SourceResult:
    """The outcome of one unit of work; ``error`` is set (and kept in the log) when it failed."""

    source: str
    origin: str
    descriptions: list[SourcedDescription] = field(default_factory=list)
    error: str = ""
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


class DescriptionSource(Protocol):
    """A source lists its units of work for a track and fetches one; ``fetch_many`` may run them in parallel."""

    name: str

    def units(self, track: TrackInfo) -> list[str]: ...

    def fetch(self, track: TrackInfo, unit: str) -> SourceResult: ...

    def fetch_many(self, work: Iterable[tuple[TrackInfo, str]]) -> Iterator[tuple[TrackInfo, str, SourceResult]]: ...


class SerialFetchMixin:
    """``fetch_many`` that runs the units one after the other (sources bound by rate limits or CPU)."""

    def fetch_many(self, work: Iterable[tuple[TrackInfo, str]]) -> Iterator[tuple[TrackInfo, str, SourceResult]]:
        for track, unit in work:
            yield track, unit, self.fetch(track, unit)  # type: ignore[attr-defined]


def text_hash(text: str) -> str:
    """Identity of a text for exact de-duplication: SHA-256 of its case-folded, space-collapsed form."""
    canonical = " ".join(text.casefold().split())
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
