"""The ``metadata`` source: an offline template writer that describes a track from its labels.

It is what the platform uses when no LLM is configured. Every description says only
what the labels say (style, composer, collection, tune type, key and mode, meter,
tempo, instruments, region), phrased from the same five perspectives as the LLM
prompts, with several phrasings per perspective chosen by a stable hash of the track so
that tracks with equal labels do not all get the same sentence. These rows are stored
with source ``metadata`` and ``details.template = True``: they are templates, never
presented as LLM output.
"""

from __future__ import annotations

import hashlib
import random

from .types import Perspective, SerialFetchMixin, SourcedDescription, SourceName, SourceResult, TrackInfo

WRITER_ID = "metadata-templates-v1"

TUNE_RHYTHM = {
    "jig": "lilting triplets",
    "double jig": "lilting triplets",
    "slip jig": "a flowing 9/8 lilt in three groups of three",
    "single jig": "skipping long-short pairs in 6/8",
    "reel": "a driving, even stream of quavers in 4/4",
    "hornpipe": "swung, dotted figures with emphatic cadences",
    "polka": "a brisk, bouncy 2/4 pulse",
    "waltz": "a swaying three-beat pulse",
    "strathspey": "stately dotted figures full of Scotch snaps",
    "march": "a steady, square marching beat",
    "mazurka": "three beats accented on the second",
    "slide": "fast, rolling 12/8",
    "barndance": "a relaxed, swung 4/4",
}
TUNE_CONTEXT = {
    "jig": "a set dance or a lively pub session",
    "reel": "a céilí dance floor or a fast session set",
    "hornpipe": "step dancing and festive sessions",
    "polka": "a country dance or a kitchen party",
    "waltz": "a slow couple dance at the end of the night",
    "strathspey": "Scottish country dancing",
    "march": "a parade or the opening of a dance set",
}
STYLE_CONTEXT = {
    "chorale": "a church service, sung by a congregation or choir",
    "hymn": "worship and quiet reflection",
    "madrigal": "intimate singing among friends, as at a Renaissance court",
    "mass": "a liturgical service in a resonant church",
    "motet": "a sacred service in a resonant church",
    "folk": "informal singing and playing at home or in a session",
    "dance": "dancing and social gatherings",
    "baroque": "a chamber concert or background for study",
    "renaissance": "early-music concerts and contemplative listening",
    "classical": "a chamber concert",
    "string quartet": "an evening chamber concert",
    "trecento": "an early-music concert of medieval Italian song",
    "medieval": "an early-music concert",
}
INSTRUMENT_TIMBRE = {
    "fiddle": "bright, bowed", "violin": "singing, bowed", "viola": "warm, bowed", "cello": "deep, resonant bowed",
    "flute": "airy, breathy", "tin whistle": "piercing, breathy", "whistle": "piercing, breathy",
    "piano": "percussive, ringing", "harpsichord": "crisp, plucked", "organ": "sustained, reedy",
    "church organ": "sustained, majestic", "accordion": "reedy, breathing", "concertina": "reedy",
    "guitar": "plucked, warm", "acoustic guitar": "plucked, warm", "harp": "shimmering, plucked",
    "choir": "rich, choral", "voice": "sung", "voices": "sung", "clarinet": "smooth, woody",
    "oboe": "nasal, plaintive", "bassoon": "dark, reedy", "trumpet": "brilliant, brassy", "horn": "mellow, brassy",
    "strings": "lush, bowed", "string ensemble": "lush, bowed", "recorder": "pure, soft", "bagpipes": "droning",
    "banjo": "twangy, bright", "mandolin": "tremolo, bright", "bass": "deep", "contrabass": "deep, bowed",
    "string orchestra": "lush, bowed", "woodwinds": "woody, breathy", "recorders": "pure, soft",
    "pan flute": "breathy, hollow", "koto": "plucked, bright", "marimba": "warm, mallet-struck",
    "brass": "bold, brassy", "xylophone": "dry, mallet-struck", "vibraphone": "shimmering, mallet-struck",
}
MOODS = {
    ("major", "fast"): ["bright", "cheerful", "lively", "buoyant", "joyful"],
    ("major", "slow"): ["calm", "warm", "serene", "gentle", "tender"],
    ("major", "moderate"): ["sunny", "easy-going", "warm", "confident"],
    ("minor", "fast"): ["driving", "restless", "urgent", "fiery"],
    ("minor", "slow"): ["melancholic", "sombre", "plaintive", "wistful"],
    ("minor", "moderate"): ["pensive", "bittersweet", "brooding", "earnest"],
    ("other", "fast"): ["earthy", "spirited", "wild"],
    ("other", "slow"): ["haunting", "ancient-sounding", "meditative"],
    ("other", "moderate"): ["modal", "earthy", "timeless"],
}


def tempo_band(bpm: float | None) -> tuple[str, str]:
    """A tempo word and a speed class ("slow"/"moderate"/"fast") for a BPM value."""
    if bpm is None:
        return "", "moderate"
    for limit, word, speed in ((60, "very slow (largo)", "slow"), (76, "slow (adagio)", "slow"),
                               (108, "walking (andante)", "moderate"), (120, "moderate (moderato)", "moderate"),
                               (156, "quick (allegro)", "fast")):
        if bpm < limit:
            return word, speed
    return "very fast (presto)", "fast"


PROPER_WORDS = {"bach", "chinese", "german", "irish", "scottish", "english", "french", "italian", "luxembourg",
                "lorraine", "palestrina", "monteverdi", "haydn", "mozart", "beethoven", "celtic", "american"}
GENRE_NOUNS = {"chorale", "mass", "madrigal", "motet", "quartet", "song", "jig", "reel", "hornpipe", "strathspey",
               "dance", "tune", "piece", "hymn", "polka", "waltz", "march", "air", "ballad", "sonata", "fugue",
               "minuet", "slide", "mazurka", "barndance", "fling"}
ANONYMOUS = {"traditional", "trad", "trad.", "anonymous", "anon", "anon.", "unknown"}


def _human(value: str) -> str:
    """A label as words: underscores to spaces, proper adjectives capitalised ("bach_chorale" -> "Bach chorale")."""
    return " ".join(word.capitalize() if word in PROPER_WORDS else word
                    for word in value.replace("_", " ").split())


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _cap(phrase: str) -> str:
    """Capitalise the first letter only (str.capitalize would lower-case "Bach")."""
    return phrase[:1].upper() + phrase[1:]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _lookup(table: dict[str, str], *keys: str) -> str:
    for key in keys:
        key = _human(key).lower()
        if not key:
            continue
        if key in table:
            return table[key]
        for name, value in table.items():
            if name in key.split() or key.endswith(name):
                return value
    return ""


class TemplateFacts:
    """The label facts the templates draw on, humanised once."""

    def __init__(self, track: TrackInfo):
        labels = track.labels
        self.title = track.title
        self.composer = (track.composer or track.label("composer")).strip()
        self.collection = (track.collection or track.label("collection")).strip()
        self.style = _human(track.label("style"))
        self.tune_type = _human(track.label("tune_type"))
        self.region = _human(track.label("region"))
        self.meter = track.label("meter")
        mode = track.label("mode").lower()
        self.mode = mode if mode in ("major", "minor") else ("other" if mode else "")
        key = track.label("key")
        self.key = key if (not mode or mode in key.lower() or mode == "other") else f"{key} {mode}"
        try:
            self.bpm: float | None = float(labels["tempo_bpm"]) if labels.get("tempo_bpm") not in (None, "") else None
        except (TypeError, ValueError):
            self.bpm = None
        self.tempo_word, self.speed = tempo_band(self.bpm)
        self.instruments = [_human(name) for name in track.instruments]

    @property
    def kind(self) -> str:
        """What the piece is, e.g. "Irish reel" or "baroque chorale"."""
        style, tune = self.style.lower(), self.tune_type.lower()
        if style and tune:
            if tune in style:
                return self.style
            if style in tune:
                return self.tune_type
            kind = f"{self.style} {self.tune_type}"
        else:
            kind = self.style or self.tune_type or "piece"
        return kind if kind.lower().split()[-1] in GENRE_NOUNS else f"{kind} piece"

    @property
    def by(self) -> str:
        if not self.composer:
            return ""
        if self.composer.lower() in ANONYMOUS:
            return " of traditional origin" if self.composer.lower().startswith("trad") else " by an unknown composer"
        return f" by {self.composer}"


def _style(f: TemplateFacts, rng: random.Random) -> str | None:
    if not (f.style or f.tune_type or f.composer):
        return None
    by = f.by
    where = f" from {f.region}" if f.region else ""
    coll = f", from the collection {f.collection}" if f.collection else ""
    options = [
        f"{_cap(_article(f.kind))}{by}{where}{coll}.",
        f"This is {_article(f.kind)}{by}{where}{coll}.",
    ]
    if f.style:
        options.append(f"A {f.tune_type or 'piece'} in the {f.style} tradition{by}{where}{coll}.")
    if f.key:
        options.append(f"{_cap(_article(f.kind))} in {f.key}{by}{where}{coll}.")
    return rng.choice(options)


def _mood(f: TemplateFacts, rng: random.Random) -> str | None:
    if not f.mode and f.bpm is None:
        return None
    words = MOODS[(f.mode or "major", f.speed)]
    first, second = rng.sample(words, 2)
    key = f" in {f.key}" if f.key else (f" in a {f.mode} key" if f.mode in ("major", "minor") else "")
    options = [
        f"{_cap(_article(first))}, {second} {f.kind}{key}.",
        f"The mood is {first} and {second}: {_article(f.kind)}{key}.",
        f"{_cap(first)} and {second} in character: {_article(f.kind)}{key}.",
    ]
    return rng.choice(options)


def _instrumentation(f: TemplateFacts, rng: random.Random) -> str | None:
    if not f.instruments:
        return None
    names = _join(f.instruments)
    timbres = [t for t in (_lookup(INSTRUMENT_TIMBRE, name) for name in f.instruments) if t]
    colour = f", with a {timbres[0]} sound" if timbres else ""
    if len(timbres) > 1:
        colour = f", blending {timbres[0]} and {timbres[1]} tones"
    options = [
        f"Played on {names}{colour}.",
        f"The instrumentation is {names}{colour}.",
        f"{_cap(_article(f.kind))} performed by {names}{colour}.",
    ]
    return rng.choice(options)


def _rhythm(f: TemplateFacts, rng: random.Random) -> str | None:
    feel = _lookup(TUNE_RHYTHM, f.tune_type, f.style)
    if not (f.meter or f.bpm is not None or feel):
        return None
    meter = f"in {f.meter} time" if f.meter else ""
    tempo = f"at a {f.tempo_word} tempo of about {round(f.bpm)} beats per minute" if f.bpm is not None else ""
    body = " ".join(part for part in (meter, tempo) if part)
    options = [
        f"{_cap(_article(f.kind))} {body}{', with ' + feel if feel else ''}.",
        f"Its rhythm: {feel or 'a steady pulse'}; it moves {body or 'at an even pace'}.",
        f"Rhythmically it is {_article(f.kind)} {body or 'with a clear pulse'}{', built on ' + feel if feel else ''}.",
    ]
    return rng.choice(options)


def _context(f: TemplateFacts, rng: random.Random) -> str | None:
    setting = _lookup(TUNE_CONTEXT, f.tune_type) or _lookup(STYLE_CONTEXT, f.style, f.tune_type)
    if not setting:
        if not (f.style or f.mode):
            return None
        setting = "dancing and parties" if f.speed == "fast" else "quiet, attentive listening"
    options = [
        f"Music for {setting}: {_article(f.kind)}{' in ' + f.key if f.key else ''}.",
        f"This {f.kind} suits {setting}.",
        f"Best heard in {setting}; {_article(f.kind)}{f.by}.",
    ]
    return rng.choice(options)


WRITERS = {
    Perspective.STYLE: _style,
    Perspective.MOOD: _mood,
    Perspective.INSTRUMENTATION: _instrumentation,
    Perspective.RHYTHM: _rhythm,
    Perspective.CONTEXT: _context,
}


def write_template_descriptions(track: TrackInfo, perspectives: tuple[str, ...] = Perspective.ALL,
                                ) -> list[SourcedDescription]:
    """One templated description per perspective that the labels support."""
    facts = TemplateFacts(track)
    out = []
    for perspective in perspectives:
        seed = int(hashlib.sha256(f"{track.track_id}|{track.title}|{perspective}".encode()).hexdigest()[:12], 16)
        rng = random.Random(seed)
        text = WRITERS[perspective](facts, rng)
        if text:
            out.append(SourcedDescription(
                text=" ".join(text.split()), source=SourceName.METADATA, origin=f"template:{perspective}:v1",
                perspective=perspective, details={"template": True, "writer": WRITER_ID}))
    if not out:  # labels too thin for any perspective: still say what the catalog knows
        by = facts.by
        out.append(SourcedDescription(
            text=f"A piece of music titled {track.title}{by}.", source=SourceName.METADATA,
            origin="template:title:v1", perspective=Perspective.STYLE,
            details={"template": True, "writer": WRITER_ID}))
    return out


class MetadataTemplateSource(SerialFetchMixin):
    """The offline writer as a source: one unit per track, stored as source ``metadata``."""

    name = SourceName.METADATA
    UNIT = "templates:v1"

    def units(self, track: TrackInfo) -> list[str]:
        return [self.UNIT]

    def fetch(self, track: TrackInfo, unit: str) -> SourceResult:
        return SourceResult(self.name, unit, descriptions=write_template_descriptions(track))
