"""From a parsed work to what one track plays: tempo, instruments, excerpt and note events in seconds.

Tempo comes from the typical note: a style plays its typical note about
``notes_per_second`` times a second, whatever value the collection wrote it in (O'Neill
notates reels in sixteenths, Ryan in eighths). Every choice is drawn from a random
generator seeded by the build seed and the track, so a rebuild is bit-identical.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .instruments import ENSEMBLES, PERCUSSION_CHANNEL, Ensemble, fit_to_range, program_for
from .parse import ParsedWork
from .styles import StyleSpec

MELODIC_CHANNELS = [c for c in range(16) if c != PERCUSSION_CHANNEL]
MIN_QUARTER_BPM, MAX_QUARTER_BPM = 20.0, 320.0


@dataclass
class RenderJob:
    """Everything the synthesiser needs for one file (seconds, MIDI numbers, GM programs)."""

    path: str
    duration_s: float
    programs: dict[int, int]  # channel -> GM program
    onsets_s: np.ndarray
    ends_s: np.ndarray
    pitches: np.ndarray
    channels: np.ndarray
    velocities: np.ndarray


def typical_note_q(work: ParsedWork) -> float:
    """The note value that carries most of the time: the time-weighted median gap between onsets.

    Taken over all parts together (the rhythmic surface), so a chorale whose soprano holds
    half notes over moving inner voices counts in quarters; weighting by time keeps a few
    passing eighths from halving the tempo.
    """
    onsets = np.unique(np.round(work.onsets, 6))
    gaps = np.diff(np.append(onsets, work.length_q))
    gaps = gaps[gaps > 1e-6]
    if not len(gaps):
        return 1.0
    gaps = np.sort(gaps)
    covered = np.cumsum(gaps)
    return float(gaps[np.searchsorted(covered, covered[-1] / 2)])


def seconds_per_quarter(work: ParsedWork, spec: StyleSpec, rng: random.Random) -> float:
    """The style's typical-note rate applied to this piece's typical note, folded into the style's beat range."""
    typical = typical_note_q(work)
    seconds = 1.0 / (spec.notes_per_second * typical) * rng.uniform(0.9, 1.1)
    low, high = spec.beat_bpm
    for _ in range(4):
        bpm = 60.0 / (seconds * beat_quarters(work.meter))
        if bpm < low:
            seconds /= 2
        elif bpm > high:
            seconds *= 2
        else:
            break
    return float(np.clip(seconds, 60.0 / MAX_QUARTER_BPM, 60.0 / MIN_QUARTER_BPM))


def beat_quarters(meter: str) -> float:
    """The felt beat in quarter notes: dotted quarter in 6/8, 9/8, 12/8; half note in 2/2; else the denominator."""
    try:
        numerator, denominator = (int(x) for x in meter.split("/"))
    except ValueError:
        return 1.0
    unit = 4.0 / denominator
    if denominator >= 8 and numerator in (6, 9, 12):
        return 3 * unit
    if meter == "2/2":
        return 2.0
    return unit


def tempo_bpm(meter: str, seconds_per_q: float) -> int:
    return int(round(60.0 / (seconds_per_q * beat_quarters(meter))))


def choose_ensemble(spec: StyleSpec, rng: random.Random) -> Ensemble:
    return ENSEMBLES[rng.choice(spec.ensembles)]


def excerpt_count(work: ParsedWork, spec: StyleSpec, seconds_per_q: float, excerpt_s: float) -> int:
    """How many non-overlapping excerpts the work holds (at least one: short pieces loop)."""
    first = float(work.onsets.min())
    piece_s = (work.length_q - first) * seconds_per_q
    return max(1, min(spec.max_excerpts, int(piece_s // excerpt_s)))


def excerpt_start_q(work: ParsedWork, index: int, count: int) -> float:
    """Excerpt 0 starts at the first note; excerpt k at the first onset after k/count of the piece."""
    first = float(work.onsets.min())
    if index == 0:
        return first
    target = first + (work.length_q - first) * index / count
    later = work.onsets[work.onsets >= target]
    return float(later.min()) if len(later) else first


def _excerpt_events(work: ParsedWork, start_q: float, seconds_per_q: float, duration_s: float):
    """Note events from ``start_q`` on, in seconds from 0; a piece shorter than the excerpt loops."""
    first = float(work.onsets.min())
    ends_q = work.onsets + work.durations
    chunks = []
    offset_q = -start_q  # a note at quarter position q sounds at (q + offset_q) * seconds_per_q
    mask = work.onsets >= start_q
    while True:
        on = (work.onsets[mask] + offset_q) * seconds_per_q
        keep = on < duration_s
        chunks.append((on[keep], ((ends_q[mask] + offset_q) * seconds_per_q)[keep],
                       work.pitches[mask][keep], work.parts[mask][keep]))
        piece_end_q = work.length_q + offset_q
        if piece_end_q * seconds_per_q >= duration_s or work.length_q - first <= 1e-6:
            break
        offset_q = piece_end_q - first  # the next pass starts where this one ended
        mask = np.ones(len(work.onsets), dtype=bool)
    return tuple(np.concatenate([chunk[i] for chunk in chunks]) for i in range(4))


def render_job(path: str, work: ParsedWork, ensemble: Ensemble, seconds_per_q: float, start_q: float,
               duration_s: float, rng: random.Random) -> RenderJob:
    """Assign parts to channels and instruments and list the notes to play.

    Polyphonic scores: part i plays ``ensemble.voices[i % len]``. One-line tunes: doubled by
    up to three distinct instruments of the ensemble, each moved into its range.
    """
    onsets, ends, pitches, parts = _excerpt_events(work, start_q, seconds_per_q, duration_s)
    programs: dict[int, int] = {}
    out = {"on": [], "end": [], "pitch": [], "channel": [], "velocity": []}
    if work.n_parts == 1:
        layers = [(instrument, 0) for instrument in ensemble.instruments[:3]]
    else:
        layers = [(ensemble.voices[i % len(ensemble.voices)], i) for i in range(min(work.n_parts, 15))]
    for channel_index, (instrument, part) in enumerate(layers):
        channel = MELODIC_CHANNELS[channel_index]
        programs[channel] = program_for(instrument)
        mask = parts == part
        count = int(mask.sum())
        base = 80 if part == 0 else 70
        jitter = np.array([rng.randint(-6, 6) for _ in range(count)], dtype=int)
        out["on"].append(onsets[mask])
        out["end"].append(onsets[mask] + np.maximum((ends[mask] - onsets[mask]) * 0.95, 0.03))
        out["pitch"].append(np.array([fit_to_range(int(p), instrument) for p in pitches[mask]], dtype=int))
        out["channel"].append(np.full(count, channel, dtype=int))
        out["velocity"].append(np.clip(base + jitter, 1, 127))
    return RenderJob(
        path=path, duration_s=duration_s, programs=programs,
        onsets_s=np.concatenate(out["on"]), ends_s=np.concatenate(out["end"]),
        pitches=np.concatenate(out["pitch"]), channels=np.concatenate(out["channel"]),
        velocities=np.concatenate(out["velocity"]),
    )


def piece_seconds(work: ParsedWork, seconds_per_q: float) -> float:
    return (work.length_q - float(work.onsets.min())) * seconds_per_q
