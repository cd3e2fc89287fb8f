"""Parse one candidate with music21 into note events, labels and its document text.

This is the slow step of the build (music21 takes 0.05 s for a tune and seconds for a
quartet movement), so its result is a small picklable ``ParsedWork`` that the build
caches; everything after it works on plain arrays.
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .abc import document_lines
from .candidates import Candidate

PARSE_SCHEMA = 1  # bump when ParsedWork changes, so old cache entries are ignored


class ParseError(Exception):
    """The score cannot be used; the message says why (it is reported with the score's name)."""


@dataclass
class ParsedWork:
    key: str
    title: str
    composer: str
    meter: str
    key_name: str  # e.g. "G major", "D dorian"
    mode: str  # "major" / "minor" / "other"
    part_names: list[str]
    # note events sorted by onset: onset and duration in quarter lengths, MIDI pitch, part index
    onsets: np.ndarray
    durations: np.ndarray
    pitches: np.ndarray
    parts: np.ndarray
    typical_note_q: float  # median note length of the top part (informative; plan.typical_note_q sets tempo)
    length_q: float
    melody_fingerprint: str
    document: list[str] = field(default_factory=list)
    tune_type: str = ""
    origin: str = ""

    @property
    def n_parts(self) -> int:
        return len(self.part_names)


class ParseTimeoutError(ParseError):
    """The parse hit its CPU-time cap; not cached, since a later run may have a larger cap."""


@contextmanager
def time_limit(seconds: float):
    """Abort a parse that uses more than ``seconds`` of CPU time (some quartet files take very long).

    CPU time (``ITIMER_PROF``), not wall time: on a machine busy with other work a wall-clock
    cap would drop different scores on different runs.
    """
    if not seconds or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        # Fire again shortly: an exception raised while a gc callback runs (hypothesis installs one) is
        # printed and swallowed, and the parse would go on uncapped.
        signal.setitimer(signal.ITIMER_PROF, 0.01)
        raise ParseTimeoutError(f"parse used more than {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _mode_label(mode: str) -> str:
    return mode if mode in ("major", "minor") else "other"


def _key_of(score) -> tuple[str, str]:
    from music21 import key

    found = next(iter(score.recurse().getElementsByClass(key.Key)), None)
    if found is None:
        signature = next(iter(score.recurse().getElementsByClass(key.KeySignature)), None)
        if signature is not None and not isinstance(signature, key.Key):
            found = signature.asKey("major")
    if found is None:
        return "", "other"
    mode = found.mode or "major"
    return f"{found.tonic.name.replace('-', 'b')} {mode}", _mode_label(mode)


def _meter_of(score) -> str:
    from music21 import meter

    signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
    return signature.ratioString if signature is not None else ""


def _part_events(part) -> list[tuple[float, float, int]]:
    """(onset, duration, pitch) of the sounding notes of one part: ties merged, chord symbols and grace notes out."""
    from music21 import chord, harmony, note

    events: list[list[float]] = []
    open_ties: dict[int, int] = {}
    for element in part.flatten().notes:
        if isinstance(element, harmony.Harmony) or not isinstance(element, note.Note | chord.Chord):
            continue
        length = float(element.duration.quarterLength)
        if length <= 0:
            continue
        onset = float(element.offset)
        tie = element.tie.type if element.tie is not None else None
        for pitch in element.pitches:
            midi = int(round(pitch.ps))
            if tie in ("stop", "continue") and midi in open_ties:
                index = open_ties[midi]
                events[index][1] = onset + length - events[index][0]
            else:
                events.append([onset, length, midi])
                index = len(events) - 1
            if tie in ("start", "continue"):
                open_ties[midi] = index
            else:
                open_ties.pop(midi, None)
    return [(on, dur, int(p)) for on, dur, p in events]


def _fingerprint(pitches: list[int], length: int = 16) -> str:
    """Transposition-invariant opening of the melody: its first ``length`` intervals."""
    intervals = np.diff(np.asarray(pitches[: length + 1]))
    return ",".join(str(int(i)) for i in intervals) if len(intervals) >= 8 else ""


def _humdrum_references(path: str) -> list[str]:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("!!!") and ":" in line:
                code, _, value = line[3:].partition(":")
                # Y*/E* records are the encoder's copyright and licence notes, not about the music
                if value.strip() and not code.strip().startswith(("Y", "E")):
                    lines.append(f"{code.strip()}: {value.strip()}")
    return lines


def parse_candidate(candidate: Candidate, timeout_s: float = 30.0) -> ParsedWork:
    """Parse a candidate into a ``ParsedWork``; raises ``ParseError`` with a reason."""
    from music21 import converter

    try:
        with time_limit(timeout_s):
            if candidate.kind == "abc":
                score = converter.parse(candidate.abc_text, format="abc", forceSource=True)
            else:
                score = converter.parse(candidate.path, forceSource=True)
            return _describe(candidate, score)
    except ParseError:
        raise
    except Exception as error:  # music21 raises many kinds on bad input; every one means "skip this score"
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ParseError(f"{type(error).__name__}: {message}") from error


def _describe(candidate: Candidate, score) -> ParsedWork:
    parts = list(getattr(score, "parts", [])) or [score]
    per_part = [(part, _part_events(part)) for part in parts]
    per_part = [(part, events) for part, events in per_part if events]
    if not per_part:
        raise ParseError("no notes")
    # top voice first, so that ensembles are assigned from the top down
    per_part.sort(key=lambda item: -float(np.mean([p for _, _, p in item[1]])))
    onsets, durations, pitches, part_ids = [], [], [], []
    for index, (_, events) in enumerate(per_part):
        for onset, duration, pitch in events:
            onsets.append(onset)
            durations.append(duration)
            pitches.append(pitch)
            part_ids.append(index)
    order = np.lexsort((np.asarray(pitches), np.asarray(onsets)))
    onsets_a = np.asarray(onsets, dtype=np.float64)[order]
    durations_a = np.asarray(durations, dtype=np.float64)[order]
    top_events = per_part[0][1]
    top_durations = [d for _, d, _ in top_events]
    key_name, mode = _key_of(score)
    metadata = score.metadata
    title = ""
    document: list[str] = []
    tune_type = origin = ""
    if candidate.kind == "abc":
        fields = candidate.abc_fields
        title = next((v for v in fields.get("T", []) if v), "")
        document = document_lines_from_fields(fields)
        tune_type = next((v for v in fields.get("R", []) if v), "")
        origin = next((v for v in fields.get("O", []) if v), "")
        mode_text = next((v for v in fields.get("K", []) if v), "")
        if re.search(r"(dor|mix|phr|lyd|loc)", mode_text.lower()):
            mode = "other"
    else:
        if candidate.path.endswith(".krn"):
            document = _humdrum_references(candidate.path)
        if metadata is not None:
            title = metadata.title or metadata.movementName or ""
            for label, value in (("Title", metadata.title), ("Movement", metadata.movementName),
                                 ("Composer", metadata.composer)):
                if value and not any(str(value) in line for line in document):
                    document.append(f"{label}: {value}")
    composer = (metadata.composer if metadata is not None and metadata.composer else "") or ""
    if not title:
        title = Path(candidate.key.split("#")[0]).stem.replace("_", " ")
    return ParsedWork(
        key=candidate.key, title=title.strip(), composer=composer.strip(), meter=_meter_of(score),
        key_name=key_name, mode=mode, part_names=[str(part.partName or f"part {i + 1}")
                                                  for i, (part, _) in enumerate(per_part)],
        onsets=onsets_a, durations=durations_a,
        pitches=np.asarray(pitches, dtype=np.int16)[order], parts=np.asarray(part_ids, dtype=np.int16)[order],
        typical_note_q=float(np.median(top_durations)), length_q=float(np.max(onsets_a + durations_a)),
        melody_fingerprint=_fingerprint([p for _, _, p in top_events]), document=document,
        tune_type=tune_type, origin=origin,
    )


def document_lines_from_fields(fields: dict[str, list[str]]) -> list[str]:
    from .abc import AbcTune

    return document_lines(AbcTune(number="", fields=fields))
