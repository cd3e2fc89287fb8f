"""What a description says that the platform knows to be false of the track: the noise an LLM adds.

A small model writes fluent, wrong sentences ("The Maple Leaf Rag is a classic American folk-rock
album by Scott Joplin, released in 1948"). Mining rejects a description that contradicts the
track's catalog fields and labels on any of five points; :func:`find_contradictions` returns each
finding as ``(kind, what the text says, what the track is)``:

- ``instrument``: it names an instrument of a family the track's instruments do not belong to
  (a guitar in a track for fiddle and piano; "strings" and "ensemble" are not instruments);
- ``era``: a year, century or period (medieval ... romantic, modern) outside the track's era, which
  comes from the style (a table of the styles the catalog knows) or from years in its collection;
- ``genre``: a form or genre that is not the track's (a jig for a reel, rock or jazz for a chorale);
- ``tempo``: a tempo word or BPM far from the track's tempo, or another meter than its own;
- ``person``: a composer or performer by name who is not the track's (a known name, or a capitalised
  name after "by", "composer", "performed by").
Only what the platform knows is checked: a track without a tempo has no tempo contradiction.
"""

from __future__ import annotations

import re

from .text import words
from .types import TrackInfo

INSTRUMENTS = "instrument"
ERA = "era"
GENRE = "genre"
TEMPO = "tempo"
PERSON = "person"
KINDS = (INSTRUMENTS, ERA, GENRE, TEMPO, PERSON)

# --- instruments ------------------------------------------------------------------------------------------
FAMILIES: dict[str, set[str]] = {
    "bowed strings": {"fiddle", "fiddles", "violin", "violins", "viola", "violas", "cello", "cellos", "contrabass",
                      "double-bass", "violoncello", "strings"},
    "keyboard": {"piano", "pianos", "pianist", "organ", "organs", "organist", "harpsichord", "keyboard", "keyboards",
                 "synthesizer", "synth", "clavichord"},
    "plucked strings": {"guitar", "guitars", "guitarist", "banjo", "banjos", "mandolin", "lute", "lutes", "harp",
                        "harps", "harpist", "ukulele", "bouzouki", "sitar", "koto", "zither"},
    "woodwind": {"flute", "flutes", "flautist", "whistle", "whistles", "recorder", "recorders", "clarinet",
                 "clarinets", "oboe", "oboes", "bassoon", "bassoons", "piccolo", "saxophone", "sax", "pan", "panpipes",
                 "woodwind", "woodwinds", "fife"},
    "brass": {"trumpet", "trumpets", "trombone", "trombones", "horn", "horns", "tuba", "cornet", "brass", "bugle"},
    "voice": {"choir", "choirs", "voice", "voices", "vocal", "vocals", "singer", "singers", "soprano", "sopranos",
              "alto", "altos", "tenor", "tenors", "baritone", "chorus", "choral", "sung", "singing", "a cappella"},
    "free reed": {"accordion", "accordions", "concertina", "harmonica", "melodeon", "bandoneon"},
    "bagpipes": {"bagpipe", "bagpipes", "pipes", "uilleann", "piper"},
    "percussion": {"drum", "drums", "drummer", "percussion", "bodhran", "bodhrán", "tambourine", "cymbal", "cymbals",
                   "marimba", "xylophone", "vibraphone", "timpani", "snare"},
}
# "strings" and "horn" are also ordinary words in other senses; these families' names never contradict alone
_LOOSE = {"strings", "horn", "horns", "pipes", "pan", "chorus", "voice", "voices", "brass", "keyboard", "sung",
          "singing", "choral", "vocal", "piper"}
_FAMILY_OF = {word: family for family, names in FAMILIES.items() for word in names}


def track_families(track: TrackInfo) -> set[str]:
    families = set()
    for name in track.instruments + [track.label("ensemble")]:
        for word in words(name.replace("_", " ").replace("+", " ")):
            if word in _FAMILY_OF:
                families.add(_FAMILY_OF[word])
            if word in ("string", "strings", "orchestra"):
                families.add("bowed strings")
            if word in ("woodwinds", "winds"):
                families.add("woodwind")
    return families


def instrument_contradictions(tokens: list[str], track: TrackInfo) -> list[tuple[str, str, str]]:
    own = track_families(track)
    if not own:
        return []
    named = _known_names(track)  # "Ryan's Mammoth Collection of Fiddle Tunes" names a fiddle for any track
    found = []
    for token in dict.fromkeys(tokens):
        family = _FAMILY_OF.get(token)
        if family and family not in own and token not in _LOOSE and token not in named:
            found.append((INSTRUMENTS, token, "/".join(sorted(own))))
    return found


# --- era --------------------------------------------------------------------------------------------------
PERIODS: dict[str, tuple[int, int]] = {
    "medieval": (1000, 1420), "trecento": (1300, 1420), "renaissance": (1400, 1620), "baroque": (1580, 1760),
    "classical-era": (1730, 1830), "romantic": (1800, 1920), "modern": (1900, 2030), "contemporary": (1945, 2030),
    "20th-century": (1900, 2000), "21st-century": (2000, 2030),
}
# The era of the styles the catalog knows (first and last year a piece of the style can be from), by label word.
STYLE_ERAS: dict[str, tuple[int, int]] = {
    "bach": (1700, 1760), "chorale": (1520, 1800), "palestrina": (1540, 1600), "monteverdi": (1580, 1645),
    "madrigal": (1520, 1650), "trecento": (1300, 1420), "mass": (1300, 1900), "quartet": (1750, 1830),
    "classical_string_quartet": (1750, 1830), "reel": (1700, 2030), "jig": (1650, 2030), "hornpipe": (1650, 2030),
    "strathspey": (1700, 2030), "folk": (1500, 2030),
}
_CENTURY = re.compile(r"\b(1[0-9]|20|21)(?:st|nd|rd|th)[ -]century\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-3][0-9])s?\b")
_DECADE = re.compile(r"\b(?:the )?'?([2-9]0)s\b")


def track_era(track: TrackInfo) -> tuple[int, int] | None:
    """The track's era (first, last year) from its style words (their overlap, else their union); None: unknown."""
    label_words = set(words(" ".join([track.label("style"), track.label("tune_type"), track.label("family")])
                            .replace("_", " ")))
    label_words.add(track.label("style"))
    spans = [STYLE_ERAS[w] for w in label_words if w in STYLE_ERAS]
    if not spans:
        return None
    first, last = max(s for s, _ in spans), min(e for _, e in spans)
    if first > last:
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return first, last


def _mentioned_years(text: str, track: TrackInfo) -> list[tuple[str, int, int]]:
    """(what, first, last year) for every year, century or period the text names; years the track's own fields
    carry (a collection "1903") are left out: repeating them is no contradiction."""
    own = set(_YEAR.findall(" ".join([track.collection, track.label("collection"), track.title, track.composer,
                                      track.document_text])))  # "O'Neill's 1112" is a tune number
    found = []
    for match in _YEAR.finditer(text):
        if match.group(1) not in own:
            year = int(match.group(1))
            found.append((match.group(0), year, year + (9 if match.group(0).endswith("s") else 0)))
    for match in _CENTURY.finditer(text):
        century = int(match.group(1))
        found.append((match.group(0), (century - 1) * 100, century * 100 - 1))
    for match in _DECADE.finditer(text):
        decade = 1900 + int(match.group(1))
        found.append((match.group(0), decade, decade + 9))
    lowered = text.lower()
    for name, span in PERIODS.items():
        if re.search(rf"\b{re.escape(name.split('-')[0])}\b", lowered) and name not in ("classical-era",
                                                                                          "20th-century",
                                                                                          "21st-century"):
            found.append((name, *span))
    return found


def era_contradictions(text: str, track: TrackInfo) -> list[tuple[str, str, str]]:
    era = track_era(track)
    if era is None:
        return []
    first, last = era
    slack = 30  # a date near the style's edges is arguable, not wrong
    return [(ERA, what, f"{first}-{last}") for what, start, end in _mentioned_years(text, track)
            if end < first - slack or start > last + slack]


# --- genre and form ---------------------------------------------------------------------------------------
FORMS = {"reel", "reels", "jig", "jigs", "hornpipe", "hornpipes", "strathspey", "strathspeys", "polka", "polkas",
         "waltz", "waltzes", "mazurka", "minuet", "menuet", "menuetto", "chorale", "chorales", "hymn", "hymns",
         "mass", "masses", "madrigal", "madrigals", "motet", "motets", "fugue", "fugues", "sonata", "sonatas",
         "symphony", "symphonies", "concerto", "concertos", "opera", "operas", "aria", "arias", "cantata",
         "cantatas", "lullaby", "ballad", "ballads", "anthem", "overture", "nocturne", "etude", "rag", "ragtime",
         "tango", "samba", "bossa", "march", "quartet", "quartets", "ballata", "caccia", "virelai", "lied", "lieder"}
GENRES = {"rock", "pop", "jazz", "blues", "hip-hop", "hip", "rap", "country", "electronic", "techno", "disco",
          "reggae", "metal", "punk", "funk", "soul", "gospel", "folk-rock", "r&b", "edm", "house", "bluegrass",
          "swing", "bebop", "grunge", "indie", "dubstep", "trap", "ska", "salsa", "flamenco", "k-pop"}
# Forms and genres a style's tracks may rightly be called beside the words of their own labels.
COMPATIBLE: dict[str, set[str]] = {
    "chorale": {"hymn", "hymns", "cantata", "cantatas", "chorales", "chorale"},
    "mass": {"motet", "motets", "mass", "masses", "hymn"},
    "madrigal": {"madrigal", "madrigals"},
    "trecento": {"ballata", "caccia", "madrigal", "madrigals", "virelai"},
    "quartet": {"quartet", "quartets", "minuet", "menuet", "menuetto", "sonata", "symphony", "rondo"},
    "reel": {"reels"}, "jig": {"jigs"}, "hornpipe": {"hornpipes"}, "strathspey": {"strathspeys", "reel"},
    "folk": {"ballad", "ballads", "lullaby", "lied", "lieder", "hymn", "march", "waltz", "polka", "mazurka"},
    "song": {"ballad", "ballads", "lullaby", "lied", "lieder", "hymn"},
}


def track_forms(track: TrackInfo) -> set[str]:
    """Form and genre words the track may rightly be called: those of its labels and their compatible ones."""
    text = " ".join([track.label("style"), track.label("tune_type"), track.label("family"), track.title,
                     track.collection, track.label("collection")])
    own = set(words(text.replace("_", " ")))
    allowed = set(own)
    for word in own:
        allowed |= COMPATIBLE.get(word, set())
        if word.endswith("s"):
            allowed |= COMPATIBLE.get(word[:-1], set())
    return allowed


def genre_contradictions(tokens: list[str], track: TrackInfo) -> list[tuple[str, str, str]]:
    allowed = track_forms(track)
    what = track.label("tune_type") or track.label("style") or "?"
    found = []
    for token in dict.fromkeys(tokens):
        if (token in FORMS or token in GENRES) and token not in allowed:
            if token == "march" and "march" not in allowed:
                continue  # "marches on", the month: too ambiguous to reject on
            if token in ("swing", "house", "country", "soul", "trap", "hip", "pop", "indie") and not _genre_use(
                    token, tokens):
                continue
            found.append((GENRE, token, what))
    return found


def _genre_use(token: str, tokens: list[str]) -> bool:
    """Ambiguous genre words count only as genres: "pop music", "country song", "soul classic", "hip-hop"."""
    index = tokens.index(token)
    after = tokens[index + 1] if index + 1 < len(tokens) else ""
    return after in ("music", "song", "songs", "tune", "album", "band", "track", "style", "genre", "hop", "classic",
                     "ballad", "rhythm", "beat", "anthem", "hit", "star", "singer", "record")


# --- tempo and meter --------------------------------------------------------------------------------------
SLOW = {"slow", "slowly", "adagio", "largo", "lento", "grave", "leisurely", "languid", "unhurried", "sluggish"}
FAST = {"fast", "quick", "quickly", "brisk", "briskly", "presto", "rapid", "rapidly", "vivace", "allegro",
        "speedy", "breakneck", "frenetic", "racing"}
SLOW_BELOW, FAST_ABOVE = 80, 110  # BPM: a track below is never fast, above never slow
_BPM = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
_METER = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")


def tempo_contradictions(text: str, tokens: list[str], track: TrackInfo) -> list[tuple[str, str, str]]:
    found = []
    bpm_value = track.labels.get("tempo_bpm")
    try:
        bpm = float(bpm_value) if bpm_value not in (None, "") else None
    except (TypeError, ValueError):
        bpm = None
    if bpm is not None:
        negated = {t for i, t in enumerate(tokens) if i and tokens[i - 1] in ("not", "never", "nor", "too")}
        for token in dict.fromkeys(tokens):
            if token in negated:
                continue
            if token in SLOW and bpm > FAST_ABOVE or token in FAST and bpm < SLOW_BELOW:
                found.append((TEMPO, token, f"{bpm:.0f} BPM"))
        for match in _BPM.finditer(text):
            stated = float(match.group(1))
            if abs(stated - bpm) > 0.35 * bpm and abs(stated - 2 * bpm) > 0.35 * bpm and abs(
                    stated - bpm / 2) > 0.35 * bpm:
                found.append((TEMPO, match.group(0), f"{bpm:.0f} BPM"))
    meter = track.label("meter")
    if meter:
        stated = {m.group(0) for m in _METER.finditer(text) if int(m.group(2)) in (1, 2, 4, 8, 16)}
        if stated and meter not in stated:
            found.extend((TEMPO, m, f"meter {meter}") for m in sorted(stated))
    return found


# --- people -----------------------------------------------------------------------------------------------
MUSICIANS = {"bach", "handel", "vivaldi", "mozart", "beethoven", "haydn", "schubert", "chopin", "brahms", "liszt",
             "wagner", "verdi", "tchaikovsky", "debussy", "ravel", "stravinsky", "mahler", "palestrina", "monteverdi",
             "machaut", "landini", "purcell", "telemann", "schumann", "mendelssohn", "dvorak", "dvořák", "grieg",
             "elgar", "joplin", "gershwin", "ellington", "armstrong", "coltrane", "davis", "sinatra", "presley",
             "elvis", "beatles", "lennon", "mccartney", "dylan", "madonna", "beyonce", "beyoncé", "jackson", "prince",
             "bowie", "queen", "abba", "carolan", "o'carolan", "byrd", "tallis", "dowland", "josquin", "lassus",
             "gesualdo", "scarlatti", "rameau", "couperin", "corelli", "boccherini", "paganini", "rossini",
             "puccini", "satie", "enya", "clannad", "chieftains", "dubliners", "pogues", "sting", "adele"}
_PERSON_AFTER = re.compile(
    r"\b(?:by|composer|composed by|written by|performed by|arranged by|sung by|played by|featuring)\s+"
    r"((?:[A-Z][A-Za-zà-ÿ'’]+|[A-Z]\.)(?:\s+(?:[A-Z][A-Za-zà-ÿ'’]+|[A-Z]\.|von|van|de|di|da))*)")
_NOT_NAMES = {"the", "a", "an", "irish", "scottish", "english", "german", "chinese", "french", "italian", "its",
              "this", "traditional", "trad", "anonymous", "unknown", "musicians", "many", "dancers", "ireland",
              "scotland", "england", "germany", "china", "lorraine", "luxembourg", "o'neill's", "it", "their", "his",
              "her", "fiddlers", "pipers", "singers", "players", "folk"}


def _known_names(track: TrackInfo) -> set[str]:
    text = " ".join([track.title, track.composer, track.collection, track.label("composer"),
                     track.label("collection"), track.label("region"), track.document_text])
    return {w.strip("'’") for w in words(text)} | {w.strip("'’").removesuffix("'s") for w in words(text)}


def person_contradictions(text: str, tokens: list[str], track: TrackInfo) -> list[tuple[str, str, str]]:
    known = _known_names(track)
    own = track.composer or track.label("composer") or "?"
    found = []
    for token in dict.fromkeys(tokens):
        name = token.removesuffix("'s")
        if name in MUSICIANS and name not in known:
            found.append((PERSON, name, own))
    for match in _PERSON_AFTER.finditer(text):
        parts = [w.strip("'’").removesuffix("'s") for w in words(match.group(1))]
        parts = [p for p in parts if len(p) > 1 and p not in ("von", "van", "de", "di", "da")]
        if not parts or parts[0] in _NOT_NAMES or any(p in known for p in parts):
            continue
        name = " ".join(parts)
        if all(name != what for _kind, what, _own in found) and not any(p in MUSICIANS for p in parts):
            found.append((PERSON, name, own))
    return found


def find_contradictions(text: str, track: TrackInfo) -> list[tuple[str, str, str]]:
    """Every contradiction of ``text`` with the track, as ``(kind, what the text says, what the track is)``."""
    tokens = words(text.replace("_", " "))
    return (instrument_contradictions(tokens, track) + era_contradictions(text, track)
            + genre_contradictions(tokens, track) + tempo_contradictions(text, tokens, track)
            + person_contradictions(text, tokens, track))
