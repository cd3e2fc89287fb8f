"""General MIDI instruments and the ensembles a track can be played by.

An ensemble lists instruments from the top voice down; the parts of a score take them in
turn (a four-part chorale on ``strings`` gets violin, violin, viola, cello), and a
one-line tune is doubled by every instrument of its ensemble (the lower ones an octave
down when their range asks for it). The per-style sets live in ``styles.py`` and overlap
on purpose, so that timbre alone does not give the style away.
"""

from __future__ import annotations

from dataclasses import dataclass

# GM program numbers (0-based) and the lowest/highest MIDI pitch each plays well.
GM_PROGRAMS: dict[str, tuple[int, int, int]] = {
    "piano": (0, 21, 108),
    "harpsichord": (6, 29, 89),
    "organ": (19, 24, 96),
    "accordion": (21, 41, 89),
    "guitar": (24, 40, 84),
    "violin": (40, 55, 100),
    "viola": (41, 48, 88),
    "cello": (42, 36, 76),
    "contrabass": (43, 28, 60),
    "harp": (46, 24, 103),
    "strings": (48, 28, 96),
    "choir": (52, 36, 84),
    "trumpet": (56, 52, 84),
    "trombone": (57, 40, 72),
    "french_horn": (60, 41, 77),
    "oboe": (68, 58, 93),
    "bassoon": (70, 34, 75),
    "clarinet": (71, 50, 94),
    "flute": (73, 60, 98),
    "recorder": (74, 60, 96),
    "pan_flute": (75, 60, 96),
    "whistle": (78, 62, 98),
    "koto": (107, 48, 96),
    "banjo": (105, 48, 88),
    "fiddle": (110, 55, 100),
    "marimba": (12, 45, 96),
}

PERCUSSION_CHANNEL = 9  # GM channel 10: drums only, never a melodic part


@dataclass(frozen=True)
class Ensemble:
    """An instrument set: ``name`` is the label (``ensemble``), ``voices`` are used top-down."""

    name: str
    voices: tuple[str, ...]

    @property
    def instruments(self) -> list[str]:
        return sorted(set(self.voices))


def _ensemble(name: str, *voices: str) -> Ensemble:
    return Ensemble(name, tuple(voices) if voices else tuple(name.split("+")))


ENSEMBLES: dict[str, Ensemble] = {
    e.name: e
    for e in (
        _ensemble("piano"),
        _ensemble("organ"),
        _ensemble("harpsichord"),
        _ensemble("choir"),
        _ensemble("strings", "violin", "violin", "viola", "cello", "contrabass"),
        _ensemble("string_orchestra", "strings"),
        _ensemble("woodwinds", "flute", "oboe", "clarinet", "bassoon"),
        _ensemble("brass", "trumpet", "trumpet", "french_horn", "trombone"),
        _ensemble("recorders", "recorder", "recorder", "recorder", "bassoon"),
        _ensemble("choir+organ", "choir", "choir", "choir", "organ"),
        _ensemble("piano+strings", "violin", "viola", "cello", "piano"),
        _ensemble("harp"),
        _ensemble("guitar"),
        _ensemble("fiddle"),
        _ensemble("flute"),
        _ensemble("whistle"),
        _ensemble("accordion"),
        _ensemble("banjo"),
        _ensemble("clarinet"),
        _ensemble("violin"),
        _ensemble("recorder"),
        _ensemble("pan_flute"),
        _ensemble("koto"),
        _ensemble("marimba"),
        _ensemble("fiddle+piano"),
        _ensemble("flute+guitar"),
        _ensemble("fiddle+accordion"),
        _ensemble("whistle+guitar"),
        _ensemble("banjo+fiddle"),
        _ensemble("flute+harp"),
        _ensemble("violin+piano"),
        _ensemble("clarinet+piano"),
        _ensemble("flute+piano"),
        _ensemble("choir+piano"),
        _ensemble("accordion+guitar"),
    )
}


# Every GM instrument above in one family of timbres (how it makes its sound), for the split that holds
# whole families out of training (``splits.heldout_instruments_split``).
INSTRUMENT_FAMILIES: dict[str, tuple[str, ...]] = {
    "keyboards": ("piano", "harpsichord", "organ"),
    "bowed_strings": ("violin", "viola", "cello", "contrabass", "strings", "fiddle"),
    "plucked_strings": ("guitar", "harp", "banjo", "koto"),
    "brass_and_reeds": ("trumpet", "trombone", "french_horn", "oboe", "bassoon", "clarinet"),
    "flutes": ("flute", "recorder", "pan_flute", "whistle"),
    "voices": ("choir",),
    "free_reeds": ("accordion",),
    "mallets": ("marimba",),
}
FAMILY_OF = {instrument: family for family, members in INSTRUMENT_FAMILIES.items() for instrument in members}


def families_of(instruments) -> set[str]:
    """The families an ensemble's instruments belong to (an unknown instrument is a family of its own)."""
    return {FAMILY_OF.get(instrument, instrument) for instrument in instruments}


def program_for(instrument: str) -> int:
    return GM_PROGRAMS[instrument][0]


def fit_to_range(pitch: int, instrument: str) -> int:
    """Move a pitch by octaves into the instrument's range (tunes are doubled, not re-voiced)."""
    _, low, high = GM_PROGRAMS[instrument]
    while pitch < low and pitch + 12 <= high:
        pitch += 12
    while pitch > high and pitch - 12 >= low:
        pitch -= 12
    return pitch
