"""The styles of the demo catalog and where each one comes from in the music21 corpus.

This is a data table, not code: add a style by adding a row. ``sources`` are glob
patterns relative to the corpus folder; ``kind`` says whether a file is one work
(``score``) or a book of ABC tunes split at ``X:`` (``abc``); ``tune_types`` keeps only
tunes whose ``R:`` field (lower-cased, spaces removed) is in the set; ``notes_per_second``
is how many of the piece's typical notes sound per second in a plausible performance (the
tempo is set from it, because the collections notate the same dance at different note
values); ``max_excerpts`` lets a style with few but long works take several excerpts
of one work (they share the work's ``work_id``, so they never straddle a split);
``beat_bpm`` is the plausible range of the felt beat: a tempo outside it is halved or
doubled into it (in polyphony the typical note can be the inner voices' eighths or the
tactus); ``mode_stated`` says the sources give major/minor (else a "major" read from a key
signature is checked against the relative minor, see ``keys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Every ensemble serves at least two families of styles, and piano serves all of them.
EARLY = (
    "piano", "organ", "choir", "strings", "string_orchestra", "recorders", "brass", "harpsichord", "choir+organ",
    "woodwinds", "piano+strings", "recorder", "choir+piano", "harp",
)
CLASSICAL = (
    "strings", "piano", "woodwinds", "piano+strings", "organ", "string_orchestra", "brass", "harpsichord",
    "clarinet+piano", "violin+piano", "flute+piano",
)
DANCE = (
    "fiddle", "flute", "whistle", "accordion", "banjo", "piano", "fiddle+piano", "flute+guitar",
    "fiddle+accordion", "whistle+guitar", "banjo+fiddle", "harp", "flute+harp", "guitar", "clarinet",
    "violin+piano", "marimba", "pan_flute", "violin",
)
FOLK = (
    "piano", "flute", "violin", "clarinet", "accordion", "guitar", "choir", "recorder", "pan_flute",
    "flute+guitar", "violin+piano", "clarinet+piano", "choir+piano", "harp", "flute+piano", "fiddle", "whistle",
    "fiddle+piano", "marimba", "banjo+fiddle", "whistle+guitar", "fiddle+accordion", "banjo", "woodwinds",
    "flute+harp",
)
CHINESE = FOLK


@dataclass(frozen=True)
class SourceSpec:
    patterns: tuple[str, ...]
    kind: str = "score"  # "score": one file, one work; "abc": a book of tunes split at X:
    exclude: tuple[str, ...] = ()
    tune_types: frozenset[str] = frozenset()
    collection: str = ""
    region: str = ""
    composer: str = ""


@dataclass(frozen=True)
class StyleSpec:
    style: str
    family: str
    collection: str
    composer: str
    region: str
    sources: tuple[SourceSpec, ...]
    ensembles: tuple[str, ...]
    notes_per_second: float
    max_excerpts: int = 1
    heldout: bool = False
    beat_bpm: tuple[float, float] = (40.0, 220.0)
    mode_stated: bool = False


def _dance(style: str, types: set[str], notes_per_second: float, beat_bpm: tuple[float, float],
           heldout: bool = False) -> StyleSpec:
    return StyleSpec(
        style=style, family="dance", collection="", composer="traditional", region="",
        sources=(
            SourceSpec(("ryansMammoth/*.abc",), kind="abc", tune_types=frozenset(types),
                       collection="Ryan's Mammoth Collection (Boston, 1883)", region="North America"),
            SourceSpec(("oneills1850/*.abc",), kind="abc", tune_types=frozenset(types),
                       collection="O'Neill's Music of Ireland (1850 melodies, 1903)", region="Ireland"),
        ),
        ensembles=DANCE, notes_per_second=notes_per_second, max_excerpts=2, heldout=heldout, beat_bpm=beat_bpm,
    )


def _essen(style: str, files: tuple[str, ...], region: str, ensembles: tuple[str, ...], heldout: bool = False):
    return StyleSpec(
        style=style, family="folk_song", collection="Essen Folksong Collection", composer="traditional",
        region=region, sources=(SourceSpec(tuple(f"essenFolksong/{f}" for f in files), kind="abc"),),
        ensembles=ensembles, notes_per_second=3.0, heldout=heldout, beat_bpm=(60.0, 130.0),
    )


STYLES: tuple[StyleSpec, ...] = (
    StyleSpec(
        "bach_chorale", "baroque_choral", "Bach four-part chorales", "Johann Sebastian Bach", "Germany",
        (SourceSpec(("bach/bwv*.mxl", "bach/bwv*.krn", "bach/bwv*.xml")),), EARLY,
        notes_per_second=1.5, beat_bpm=(56.0, 112.0), mode_stated=True,
    ),
    StyleSpec(
        "palestrina_mass", "renaissance_sacred", "Palestrina masses", "Giovanni Pierluigi da Palestrina",
        "Italy", (SourceSpec(("palestrina/*.krn",)),), EARLY, notes_per_second=2.2, beat_bpm=(48.0, 96.0),
    ),
    StyleSpec(
        "monteverdi_madrigal", "renaissance_secular", "Monteverdi madrigals (books 3-5)", "Claudio Monteverdi",
        "Italy", (SourceSpec(("monteverdi/*.mxl",)),), EARLY,
        notes_per_second=2.6, max_excerpts=4, beat_bpm=(60.0, 120.0),
    ),
    StyleSpec(
        "trecento", "medieval", "Polyphonic Music of the Fourteenth Century (PMFC)", "", "Italy",
        (SourceSpec(("trecento/*.xml", "trecento/*.mxl"), exclude=("*_bak.xml",)),), EARLY,
        notes_per_second=3.0, max_excerpts=3, heldout=True, beat_bpm=(50.0, 110.0),
    ),
    StyleSpec(
        "classical_string_quartet", "classical", "Classical string quartets", "", "Austria",
        (SourceSpec(("haydn/*/*.mxl",), composer="Joseph Haydn"),
         SourceSpec(("mozart/*/*.mxl",), exclude=("mozart/k545/*",), composer="Wolfgang Amadeus Mozart"),
         SourceSpec(("beethoven/*/*.mxl", "beethoven/*/*.krn", "beethoven/*.mxl"), composer="Ludwig van Beethoven")),
        CLASSICAL, notes_per_second=4.5, max_excerpts=5, beat_bpm=(50.0, 160.0), mode_stated=True,
    ),
    _dance("reel", {"reel"}, 7.5, (80.0, 130.0)),
    _dance("double_jig", {"jig", "doublejig"}, 6.5, (90.0, 150.0)),
    _dance("hornpipe", {"hornpipe", "clog"}, 5.0, (55.0, 110.0)),
    _dance("strathspey", {"strathspey", "highlandfling", "fling"}, 4.0, (60.0, 140.0)),
    _dance("slip_jig", {"slipjig"}, 6.5, (90.0, 150.0), heldout=True),
    _essen("german_folk_song",
           ("altdeu10.abc", "altdeu20.abc", "boehme10.abc", "boehme20.abc", "erk10.abc", "erk20.abc", "erk30.abc",
            "fink0.abc", "kinder0.abc", "zuccal0.abc"), "Germany", FOLK),
    _essen("chinese_folk_song", ("han1.abc", "han2.abc"), "China", CHINESE, heldout=True),
    _essen("luxembourg_folk_song", ("lux.abc",), "Luxembourg", FOLK),
    _essen("lorraine_folk_song", ("lot.abc", "dva0.abc"), "Lorraine", FOLK),
)

STYLE_BY_NAME = {spec.style: spec for spec in STYLES}


def heldout_styles() -> list[str]:
    return [spec.style for spec in STYLES if spec.heldout]
