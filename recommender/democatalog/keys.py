"""Major or minor from the notes, where the score only gives a key signature.

MusicXML without a mode, Essen's ``K:`` lines and many dance-tune transcriptions state
the signature, not the key, so an E minor jig reads as "G major". The Krumhansl-Kessler
profiles decide between the signature's major key and its relative minor, with a nudge
toward the key on which the piece ends. A stated minor or church mode is kept.
"""

from __future__ import annotations

import numpy as np

from .parse import ParsedWork

MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
MINOR_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]
FINAL_NOTE_BONUS = 0.15


def tonic_pitch_class(name: str) -> int | None:
    if not name or name[0].upper() not in PITCH_CLASS:
        return None
    pc = PITCH_CLASS[name[0].upper()]
    for accidental in name[1:]:
        pc += {"#": 1, "b": -1, "-": -1}.get(accidental, 0)
    return pc % 12


def _fit(histogram: np.ndarray, tonic: int, profile: np.ndarray) -> float:
    return float(np.corrcoef(np.roll(histogram, -tonic), profile)[0, 1])


def refine_key(work: ParsedWork) -> tuple[str, str]:
    """(key name, mode) with "major" checked against the relative minor; other answers are kept."""
    if work.mode != "major" or not work.key_name.endswith(" major") or not len(work.pitches):
        return work.key_name, work.mode
    major = tonic_pitch_class(work.key_name.split()[0])
    if major is None:
        return work.key_name, work.mode
    minor = (major - 3) % 12
    histogram = np.bincount(work.pitches.astype(int) % 12, weights=work.durations, minlength=12)
    if histogram.sum() <= 0 or np.ptp(histogram) == 0:
        return work.key_name, work.mode
    major_fit, minor_fit = _fit(histogram, major, MAJOR_PROFILE), _fit(histogram, minor, MINOR_PROFILE)
    last = work.onsets.max()
    final_bass = int(work.pitches[work.onsets == last].min()) % 12
    major_fit += FINAL_NOTE_BONUS * (final_bass == major)
    minor_fit += FINAL_NOTE_BONUS * (final_bass == minor)
    if minor_fit > major_fit:
        return f"{MINOR_NAMES[minor]} minor", "minor"
    return work.key_name, work.mode
