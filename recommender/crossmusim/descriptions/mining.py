"""Description mining: judge every candidate text of a track, keep the best few, say why the rest went.

Per track, in order:
1. normalise the text (``text.normalise_text``);
2. rules, each with a stable reason: boilerplate (navigation, cookie banner, licence),
   lyrics only, too short, too long, a contradiction of what the platform knows of the track
   (instrument family, era, genre/form, tempo or meter, a composer or performer that is not the
   track's: ``contradictions.py``; the first finding is the reason, all are in ``details``), not
   about music;
3. relevance score in 0..1 from three parts: agreement with the track's metadata (label
   values the text names, minus contradictions such as "minor" for a major-mode track),
   coverage of musical aspects (style, mood, instrumentation, rhythm/tempo, harmony/
   melody, context), and — when an encoder is given — the cosine between the text and a
   sentence made of the track's labels; a trained model's own audio-text score can join
   as a fourth part (``model_scores``);
4. near-duplicates: exact (same normalised text) and semantic (MiniLM cosine above a
   threshold) — the higher-scoring text of a pair stays;
5. a per-track cap: the best ``max_per_track`` survivors are kept, preferring one
   perspective per slot before a second of the same.
Every rejected candidate keeps its reason and the figures behind it (``details``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .contradictions import KINDS, find_contradictions
from .text import normalise_text, words
from .types import TrackInfo, text_hash


class Reason:
    """Why a description was rejected (stable strings: stored, filtered on in the admin, counted)."""

    BOILERPLATE_NAVIGATION = "boilerplate: navigation"
    BOILERPLATE_COOKIES = "boilerplate: cookie banner"
    BOILERPLATE_LICENCE = "boilerplate: licence"
    LYRICS = "lyrics only"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    NOT_MUSIC = "not about music"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near-duplicate"
    LOW_RELEVANCE = "low relevance"
    OVER_CAP = "over per-track cap"
    # says something the platform knows to be false of the track (contradictions.py); one reason per kind
    CONTRADICTION_INSTRUMENT = "contradiction: instrument"
    CONTRADICTION_ERA = "contradiction: era"
    CONTRADICTION_GENRE = "contradiction: genre"
    CONTRADICTION_TEMPO = "contradiction: tempo or meter"
    CONTRADICTION_PERSON = "contradiction: person"
    CONTRADICTIONS = (CONTRADICTION_INSTRUMENT, CONTRADICTION_ERA, CONTRADICTION_GENRE, CONTRADICTION_TEMPO,
                      CONTRADICTION_PERSON)


_CONTRADICTION_REASON = dict(zip(KINDS, Reason.CONTRADICTIONS, strict=True))


@dataclass
class MiningConfig:
    min_words: int = 6
    max_words: int = 150
    near_duplicate_threshold: float = 0.90
    max_per_track: int = 6
    min_score: float = 0.15
    reject_contradictions: bool = True
    weight_agreement: float = 0.4
    weight_coverage: float = 0.35
    weight_semantic: float = 0.25
    weight_model: float = 0.25


@dataclass(frozen=True)
class Candidate:
    """One description to judge; ``key`` is the caller's id (a database pk, an index)."""

    key: object
    text: str
    source: str = ""
    perspective: str = ""


@dataclass
class Verdict:
    key: object
    text: str
    kept: bool
    reason: str = ""
    score: float = 0.0
    details: dict = field(default_factory=dict)


# --- vocabulary ---------------------------------------------------------------------------------------
ASPECT_TERMS: dict[str, set[str]] = {
    "style": {"style", "genre", "tradition", "traditional", "folk", "baroque", "renaissance", "classical",
              "romantic", "chorale", "hymn", "madrigal", "motet", "mass", "sacred", "secular", "dance", "jig",
              "reel", "hornpipe", "polka", "waltz", "strathspey", "march", "ballad", "air", "song", "tune",
              "fugue", "canon", "sonata", "suite", "minuet", "gavotte", "sarabande", "irish", "scottish",
              "celtic", "english", "german", "polyphonic", "polyphony", "homophonic", "counterpoint",
              "contrapuntal", "liturgical", "composition", "piece", "work", "form"},
    "mood": {"mood", "bright", "cheerful", "lively", "joyful", "happy", "sad", "melancholic", "melancholy",
             "sombre", "somber", "calm", "serene", "gentle", "tender", "dark", "warm", "energetic", "driving",
             "restless", "plaintive", "wistful", "peaceful", "solemn", "majestic", "playful", "festive",
             "haunting", "reflective", "pensive", "uplifting", "mournful", "exuberant", "buoyant", "spirited",
             "dramatic", "intimate", "emotional", "feeling", "character", "bittersweet", "brooding", "tranquil"},
    "instrumentation": {"instrument", "instruments", "instrumentation", "timbre", "fiddle", "violin", "viola",
                        "cello", "bass", "flute", "whistle", "piano", "harpsichord", "organ", "accordion",
                        "concertina", "guitar", "harp", "choir", "voice", "voices", "vocal", "vocals", "singer",
                        "sung", "clarinet", "oboe", "bassoon", "trumpet", "horn", "strings", "string", "bowed",
                        "plucked", "recorder", "bagpipes", "pipes", "banjo", "mandolin", "ensemble", "quartet",
                        "orchestra", "solo", "soprano", "alto", "tenor", "percussion", "drum", "drums", "brass",
                        "woodwind", "reed", "reedy", "keyboard", "played", "performed", "sound", "tone", "tones"},
    "rhythm": {"rhythm", "rhythmic", "rhythmically", "tempo", "meter", "metre", "time", "beat", "beats",
               "pulse", "bpm", "fast", "slow", "quick", "brisk", "steady", "syncopated", "syncopation",
               "triplets", "dotted", "swing", "swung", "lilt", "lilting", "allegro", "adagio", "andante",
               "moderato", "presto", "largo", "bar", "bars", "measure", "measures", "6/8", "4/4", "3/4", "2/4",
               "9/8", "12/8", "groove", "pace", "moves", "bouncy", "quavers", "crotchets"},
    "harmony": {"melody", "melodic", "harmony", "harmonic", "harmonies", "chord", "chords", "major", "minor",
                "key", "mode", "modal", "dorian", "mixolydian", "aeolian", "scale", "tonic", "cadence",
                "cadences", "phrase", "phrases", "motif", "theme", "voice-leading", "register", "notes",
                "ornament", "ornaments", "ornamentation", "drone", "interval", "intervals", "octave", "pitch"},
    "context": {"dancing", "dancers", "dance", "session", "church", "service", "worship", "concert", "listening",
                "background", "study", "wedding", "party", "festival", "céilí", "ceili", "pub", "court",
                "congregation", "liturgy", "evening", "performance", "recital", "occasion", "played at"},
}
MUSIC_TERMS: set[str] = set().union(*ASPECT_TERMS.values()) | {
    "music", "musical", "musician", "musicians", "composer", "composed", "arranged", "arrangement", "score",
    "recording", "recorded", "album", "track", "singing", "sing", "sings", "play", "playing", "plays",
    "harmonised", "harmonized", "notation", "abc", "transcribed", "setting", "variations", "verse", "chorus",
    "refrain", "strain", "part", "parts", "piper", "fiddler", "player", "players", "collected", "collector",
    "dancer", "dancers", "choral", "instrumental", "quartet", "koto", "marimba", "woodwinds", "recorders",
    "trecento", "medieval", "chorales", "madrigals", "motets", "masses", "reels", "jigs", "hornpipes"}
# Words too generic to count as "about music" on their own.
WEAK_TERMS = {"time", "work", "piece", "part", "parts", "form", "service", "setting", "sound", "character",
              "feeling", "evening", "occasion", "background", "study", "court", "dark", "warm", "key", "notes",
              "bar", "bars", "string", "played", "pace", "moves", "track", "album", "record"}

COOKIE = re.compile(r"\b(cookies?|cookie policy|accept all|consent|gdpr|tracking technologies|privacy settings)\b",
                    re.IGNORECASE)
LICENCE = re.compile(
    r"(creative commons|licen[cs]ed under|all rights reserved|copyright\s*(?:©|\(c\)|\d{4})|©\s*\d{4}|"
    r"terms of (?:use|service)|privacy policy|gnu (?:free documentation|general public) licen[cs]e|cc[- ]by(?:-sa)?|"
    r"permission is hereby granted|this work is licen[cs]ed)", re.IGNORECASE)
NAVIGATION = re.compile(
    r"(skip to (?:main )?content|main menu|jump to (?:navigation|search)|sign in|log ?in|subscribe|newsletter|"
    r"follow us|share (?:on|this)|back to top|previous page|next page|read more|click here|home\s*[|»>/]|"
    r"search this site|all categories|related posts)", re.IGNORECASE)
NAV_SEPARATORS = re.compile(r"\s[|»›·•/]\s|\s>\s")


def boilerplate_reason(text: str) -> str:
    """The kind of boilerplate a text is, or "" when it is not boilerplate.

    A pattern alone is not enough in a long text (a page may mention its licence in
    passing): the text must be short, or dominated by the pattern's matches.
    """
    tokens = words(text)
    n = max(1, len(tokens))
    music = sum(1 for t in tokens if t in MUSIC_TERMS and t not in WEAK_TERMS)
    cookie_hits = len(COOKIE.findall(text))
    if cookie_hits and (n < 60 or cookie_hits * 15 >= n) and music <= 1 + n // 25:
        return Reason.BOILERPLATE_COOKIES
    licence_hits = len(LICENCE.findall(text))
    if licence_hits and (n < 50 or licence_hits * 15 >= n) and music <= 1 + n // 25:
        return Reason.BOILERPLATE_LICENCE
    nav_hits = len(NAVIGATION.findall(text)) + len(NAV_SEPARATORS.findall(text))
    if nav_hits >= 2 or (nav_hits and n < 12):
        sentences = len(re.findall(r"[a-z]{3,}[.!?](\s|$)", text))
        if nav_hits >= sentences:
            return Reason.BOILERPLATE_NAVIGATION
    return ""


def is_lyrics_only(text: str, perspective: str = "") -> bool:
    """Verse without commentary: sung words (from a lyrics field, or many short lines or hyphenated syllables)."""
    tokens = words(text)
    about_music = sum(1 for t in tokens if t in MUSIC_TERMS and t not in WEAK_TERMS)
    if perspective == "lyrics":
        return about_music < 2
    lines = [line for line in text.split("\n") if line.strip()]
    syllables = len(re.findall(r"\b\w+-\w+-\w*\b|\b\w+-\s", text))
    short_lines = len(lines) >= 4 and sum(len(words(line)) for line in lines) / len(lines) <= 8
    prose_sentences = len(re.findall(r"[a-z]{3,}\.(\s|$)", text))
    return (short_lines or syllables >= 3) and about_music == 0 and prose_sentences <= 1


def label_terms(track: TrackInfo) -> dict[str, list[str]]:
    """Words of each label value a description may name (e.g. style "irish_reel" -> ["irish", "reel"])."""
    out: dict[str, list[str]] = {}
    for name in ("style", "tune_type", "composer", "collection", "region", "meter", "key", "mode"):
        value = track.label(name)
        if name == "composer" and not value:
            value = track.composer
        if name == "collection" and not value:
            value = track.collection
        if value:
            parts = [value.lower()] if name in ("meter",) else [w for w in words(value.replace("_", " "))
                                                                 if len(w) > 2 or name == "key"]
            if parts:
                out[name] = parts
    if track.instruments:
        out["instruments"] = [w for name in track.instruments for w in words(name.replace("_", " ")) if len(w) > 2]
    if track.labels.get("tempo_bpm") not in (None, ""):
        out["tempo"] = ["tempo", "bpm", "fast", "slow", "quick", "brisk", "lively", "moderate", "allegro",
                        "adagio", "andante", "moderato", "presto"]
    return out


def agreement_score(text: str, track: TrackInfo) -> tuple[float, dict]:
    """Share of the track's label groups the text names, minus a penalty per contradiction (0..1)."""
    tokens = set(words(text.replace("_", " ")))
    lowered = text.lower()
    groups = label_terms(track)
    if not groups:
        return 0.5, {"labels": 0}
    named = []
    for name, terms in groups.items():
        if name == "meter":
            if terms[0] in lowered:
                named.append(name)
        elif name == "key":
            key_root = terms[0]
            if re.search(rf"\b{re.escape(key_root)}\b[ -]?(?:major|minor|flat|sharp|dorian|mixolydian|$)", lowered,
                         re.IGNORECASE) or f"key of {key_root}" in lowered:
                named.append(name)
        elif any(term in tokens for term in terms):
            named.append(name)
    contradictions = []
    mode = track.label("mode").lower()
    if mode == "major" and "minor" in tokens and "major" not in tokens:
        contradictions.append("minor")
    if mode == "minor" and "major" in tokens and "minor" not in tokens:
        contradictions.append("major")
    meter = track.label("meter")
    other_meters = {m for m in re.findall(r"\b\d{1,2}/\d{1,2}\b", text)} - {meter}
    if meter and other_meters and meter not in text:
        contradictions.append("meter " + ",".join(sorted(other_meters)))
    # A description written from one perspective names one or two label groups: two is full agreement.
    score = min(1.0, len(named) / min(2, len(groups))) - 0.35 * len(contradictions)
    return max(0.0, score), {"named": named, "contradictions": contradictions}


def coverage_score(text: str) -> tuple[float, list[str]]:
    """Share of musical aspects the text touches (two aspects count as full coverage: focus is no fault)."""
    tokens = set(words(text))
    lowered = text.lower()
    covered = [aspect for aspect, terms in ASPECT_TERMS.items()
               if any((t in tokens) if " " not in t else (t in lowered) for t in terms)]
    return min(1.0, len(covered) / 2), covered


def label_sentence(track: TrackInfo) -> str:
    """The track's labels as one sentence: the anchor for the semantic part of the score."""
    parts = [track.label("style").replace("_", " "), track.label("tune_type"), track.label("region")]
    head = " ".join(p for p in parts if p) or "music"
    extra = []
    if track.label("key"):
        extra.append(f"in {track.label('key')} {track.label('mode')}".strip())
    if track.label("meter"):
        extra.append(f"in {track.label('meter')} time")
    if track.instruments:
        extra.append("played on " + ", ".join(track.instruments))
    if track.composer:
        extra.append(f"by {track.composer}")
    return " ".join([head] + extra)


Encoder = Callable[[Sequence[str]], np.ndarray]


def mine_track(track: TrackInfo, candidates: Sequence[Candidate], config: MiningConfig | None = None,
               encode: Encoder | None = None, model_scores: Mapping[object, float] | None = None) -> list[Verdict]:
    """Judge all candidates of one track (see the module docstring). ``encode`` returns L2-normalised rows.

    ``model_scores`` (candidate key -> 0..1), when a trained model exists, is its own audio-text
    agreement for the candidate; it joins the relevance score with ``weight_model``.
    """
    config = config or MiningConfig()
    verdicts: list[Verdict] = []
    alive: list[Verdict] = []
    for candidate in candidates:
        text = normalise_text(candidate.text)
        n_words = len(words(text))
        verdict = Verdict(candidate.key, text, kept=False, details={"words": n_words})
        verdict.details["source"] = candidate.source
        verdict.details["perspective"] = candidate.perspective
        reason = ""
        if n_words and (boilerplate := boilerplate_reason(text)):
            reason = boilerplate
        elif n_words and is_lyrics_only(text, candidate.perspective):
            reason = Reason.LYRICS
        elif n_words < config.min_words:
            reason = Reason.TOO_SHORT
        elif n_words > config.max_words:
            reason = Reason.TOO_LONG
        elif config.reject_contradictions and (found := find_contradictions(text, track)):
            reason = _CONTRADICTION_REASON[found[0][0]]
            verdict.details["contradicts"] = [list(item) for item in found]
        else:
            agreement, agreement_details = agreement_score(text, track)
            coverage, covered = coverage_score(text)
            tokens = words(text)
            music_words = [t for t in tokens if t in MUSIC_TERMS and t not in WEAK_TERMS]
            if not music_words and not agreement_details.get("named"):
                reason = Reason.NOT_MUSIC
            verdict.details.update({"agreement": round(agreement, 4), "coverage": round(coverage, 4),
                                    "aspects": covered, **agreement_details})
        verdict.reason = reason
        verdicts.append(verdict)
        if not reason:
            alive.append(verdict)

    if alive and encode is not None:
        vectors = np.asarray(encode([v.text for v in alive] + [label_sentence(track)]), dtype=np.float32)
        anchor = vectors[-1]
        vectors = vectors[:-1]
        semantic = np.clip(vectors @ anchor, 0.0, 1.0)
    else:
        vectors = None
        semantic = None
    for i, verdict in enumerate(alive):
        weights_sum = config.weight_agreement + config.weight_coverage
        score = config.weight_agreement * verdict.details["agreement"] + config.weight_coverage * verdict.details[
            "coverage"]
        if semantic is not None:
            verdict.details["semantic"] = round(float(semantic[i]), 4)
            score += config.weight_semantic * float(semantic[i])
            weights_sum += config.weight_semantic
        if model_scores and verdict.key in model_scores:
            model = min(1.0, max(0.0, float(model_scores[verdict.key])))
            verdict.details["model"] = round(model, 4)
            score += config.weight_model * model
            weights_sum += config.weight_model
        verdict.score = round(score / weights_sum, 4)

    # Highest score first: of a duplicate pair, the better text survives.
    order = sorted(range(len(alive)), key=lambda i: (-alive[i].score, i))
    survivors: list[int] = []
    seen_hashes: dict[str, int] = {}
    for i in order:
        verdict = alive[i]
        digest = text_hash(verdict.text)
        if digest in seen_hashes:
            verdict.reason = Reason.DUPLICATE
            verdict.details["duplicate_of"] = _key(alive[seen_hashes[digest]].key)
            continue
        if vectors is not None and survivors:
            sims = vectors[survivors] @ vectors[i]
            j = int(np.argmax(sims))
            if sims[j] >= config.near_duplicate_threshold:
                verdict.reason = Reason.NEAR_DUPLICATE
                verdict.details["duplicate_of"] = _key(alive[survivors[j]].key)
                verdict.details["similarity"] = round(float(sims[j]), 4)
                continue
        seen_hashes[digest] = i
        if verdict.score < config.min_score:
            verdict.reason = Reason.LOW_RELEVANCE
            continue
        survivors.append(i)

    for rank, i in enumerate(_diverse_order([alive[i] for i in survivors], survivors)):
        verdict = alive[i]
        verdict.details["rank"] = rank + 1
        if rank < config.max_per_track:
            verdict.kept = True
        else:
            verdict.reason = Reason.OVER_CAP
    return verdicts


def mine_many(items: Sequence[tuple[TrackInfo, Sequence[Candidate]]], config: MiningConfig | None = None,
              encode: Encoder | None = None, model_scores: Mapping[object, float] | None = None,
              ) -> list[list[Verdict]]:
    """``mine_track`` over several tracks with one encoder call for all their texts.

    The encoder's per-call overhead dominates with the handful of texts one track has, so
    callers mine tracks in batches (the Django service uses 32 tracks per call).
    """
    if encode is None:
        return [mine_track(track, candidates, config, None, model_scores) for track, candidates in items]
    texts = {normalise_text(c.text) for _track, candidates in items for c in candidates}
    texts |= {label_sentence(track) for track, _candidates in items}
    ordered = sorted(t for t in texts if t)
    memo = dict(zip(ordered, np.asarray(encode(ordered), dtype=np.float32), strict=True)) if ordered else {}

    def cached_encode(batch: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(batch) if t not in memo]
        if missing:
            memo.update(zip(missing, np.asarray(encode(missing), dtype=np.float32), strict=True))
        return np.stack([memo[t] for t in batch])

    return [mine_track(track, candidates, config, cached_encode, model_scores) for track, candidates in items]


def _diverse_order(verdicts: list[Verdict], indices: list[int]) -> list[int]:
    """Indices by score, but each (source, perspective) gets its first slot before any gets a second."""
    rounds: dict[tuple, int] = {}
    keyed = []
    for position, (verdict, index) in enumerate(zip(verdicts, indices, strict=True)):
        group = (verdict.details.get("source"), verdict.details.get("perspective"))
        turn = rounds.get(group, 0)
        rounds[group] = turn + 1
        keyed.append((turn, position, index))
    return [index for _turn, _position, index in sorted(keyed)]


def _key(key: object) -> object:
    return key if isinstance(key, int | str) else str(key)
