"""Candidate works of each style, read from the corpus files without parsing any music.

Enumeration is cheap (file names and raw ABC headers), so the build can decide what to
parse. Exact copies are dropped here, before anything is parsed: the same work shipped
in two formats (``.krn`` and ``.mxl``), a backup file, and O'Neill's tunes that appear in
two overlapping files of the corpus. Variants (one tune in Ryan's and in O'Neill's, Essen
variants, one chorale harmonised twice) are kept as separate tracks and grouped later
under one ``work_id`` (see ``dedup.py``).
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .abc import body_fingerprint, split_tunes
from .styles import StyleSpec

TUNE_TYPE_WORDS = {
    "reel", "reels", "jig", "jigs", "double", "slip", "hornpipe", "strathspey", "clog", "fling", "highland",
    "the", "a", "an", "set", "dance", "no", "march", "air", "of",
}


@dataclass
class Candidate:
    """One work that could become a track: a score file, or one tune of an ABC book."""

    key: str  # unique and stable: "<path relative to corpus>" or "<path>#<X number>"
    style: str
    path: str  # absolute path of the file
    kind: str  # "score" or "abc"
    collection: str
    region: str
    composer: str = ""
    abc_text: str = ""
    abc_fields: dict[str, list[str]] = field(default_factory=dict)
    work_keys: list[str] = field(default_factory=list)  # any shared key puts two tracks in one work


def normalise_title(title: str) -> str:
    """A title reduced to its distinctive words: 'The Acacia -- Reel' and 'Acacia' match."""
    title = title.split("--")[0]
    title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    title = re.sub(r"\([^)]*\)", " ", title).replace("'s", "s")
    words = [w for w in re.findall(r"[a-z0-9]+", title) if w not in TUNE_TYPE_WORDS]
    return " ".join(words)


def _tune_type(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


def _score_work_key(relative: str) -> str:
    """The same work whatever its format or copy: drop the extension, backup and scan suffixes."""
    stem = re.sub(r"\.(mxl|xml|krn|musicxml)$", "", relative)
    return re.sub(r"(_bak|-sc)$", "", stem)


@functools.lru_cache(maxsize=1)
def _chorale_titles() -> dict[str, str]:
    """BWV number ("153.1") -> chorale title, from music21's Riemenschneider/BWV table."""
    from music21.corpus.chorales import ChoraleListRKBWV

    return {str(bwv): entry["title"] for bwv, entry in ChoraleListRKBWV().byBWV.items() if entry.get("title")}


def chorale_title(copy_key: str) -> str:
    """The chorale melody's title for a ``bach/bwvNNN.M`` file, or ""."""
    match = re.match(r"bach/bwv([\d.]+)$", copy_key)
    return _chorale_titles().get(match.group(1), "") if match else ""


def _score_group_keys(copy_key: str) -> list[str]:
    """Keys shared by different files of one work: the movements and sections of one Palestrina mass,
    the harmonisations of one chorale melody."""
    match = re.match(r"palestrina/[A-Za-z_]+?_(\d+)(_[a-z])?$", copy_key)
    if match:
        return [f"palestrina/mass-{int(match.group(1))}"]
    title = normalise_title(chorale_title(copy_key))
    return [f"chorale:{title}"] if title else []


def _files(root: Path, patterns: tuple[str, ...], exclude: tuple[str, ...]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(str(root / pattern))):
            relative = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else path
            if any(fnmatch.fnmatch(relative, ex) or fnmatch.fnmatch(Path(path).name, ex) for ex in exclude):
                continue
            found.setdefault(relative, path)
    return list(found.items())


def style_candidates(spec: StyleSpec, root: Path) -> list[Candidate]:
    """Every distinct work of one style in corpus order (exact copies removed, the first copy kept)."""
    candidates: list[Candidate] = []
    seen_copies: set[str] = set()
    for source in spec.sources:
        collection = source.collection or spec.collection
        region = source.region or spec.region
        composer = source.composer or spec.composer
        for relative, path in _files(root, source.patterns, source.exclude):
            if source.kind == "score":
                copy_key = _score_work_key(relative)
                if copy_key in seen_copies:
                    continue
                seen_copies.add(copy_key)
                candidates.append(Candidate(relative, spec.style, path, "score", collection, region, composer,
                                            work_keys=[copy_key, *_score_group_keys(copy_key)]))
                continue
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            for tune in split_tunes(text):
                tune_type = _tune_type(tune.first("R"))
                if source.tune_types and tune_type not in source.tune_types:
                    continue
                book = tune.first("B")
                copy_key = (f"{collection}:{book}" if re.search(r"\d", book)
                            else f"{collection}:{body_fingerprint(tune)}")
                if copy_key in seen_copies or not tune.body.strip():
                    continue
                seen_copies.add(copy_key)
                keys = [f"copy:{copy_key}"]
                title = normalise_title(tune.title)
                if title:
                    keys.append(f"title:{spec.family}:{title}")
                candidates.append(Candidate(
                    f"{relative}#{tune.number}", spec.style, path, "abc", collection, region, composer,
                    abc_text=tune.text, abc_fields=tune.fields, work_keys=keys,
                ))
    return candidates


def ordered_candidates(spec: StyleSpec, root: Path, seed: int) -> list[Candidate]:
    """The style's candidates in a seeded order: a smaller build takes a prefix of a larger one."""
    candidates = style_candidates(spec, root)
    random.Random(f"{seed}:{spec.style}").shuffle(candidates)
    return candidates
