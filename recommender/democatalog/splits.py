"""Deterministic train/val/test splits, stratified by style and grouped by work.

``default``: per style, whole works go to test until about 15 % of the style's tracks,
then to val, the rest to train (each part gets at least one work once a style has three).
``heldout_styles``: the same parts, except that every work touching a held-out style
moves to test, so those styles are never seen in training.
``heldout_instruments``: whole instrument families only in test, a further family only in
val (see :data:`HELDOUT_INSTRUMENT_FAMILIES`), so that both the choices and the final score
are made on timbres that training never heard.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .instruments import families_of

TRAIN, VAL, TEST = "train", "val", "test"
DEFAULT_SPLIT = "default"
HELDOUT_SPLIT = "heldout_styles"
HELDOUT_INSTRUMENTS_SPLIT = "heldout_instruments"

HELDOUT_INSTRUMENT_FAMILIES: tuple[str, ...] = ("plucked_strings", "brass_and_reeds")
"""The instrument families (``instruments.INSTRUMENT_FAMILIES``) that only the test part of
``heldout_instruments`` plays. Chosen on 2026-12-05 from the ensemble table alone, before any
model was scored on the split, for three reasons: (1) each is a way of making sound that no
other family shares (a plucked string's sharp attack and free decay; the buzzing lip or reed
of brass, clarinet, oboe and bassoon), so a projection that learned the training timbres has
nothing close to lean on; (2) each spans several ensembles (plucked: harp, guitar, banjo,
flute+guitar, whistle+guitar, banjo+fiddle, flute+harp, accordion+guitar; brass and reeds:
brass, woodwinds, recorders, clarinet, clarinet+piano), so cross-ensemble retrieval among
the new tracks exists; (3) together they reach every family of styles (plucked: early,
dance, folk; brass and reeds: early, classical, dance, folk), and no ensemble holds both.
An ensemble with any instrument of these families is held out whole (``flute+guitar`` is new
because of its guitar)."""

VALIDATION_INSTRUMENT_FAMILIES: tuple[str, ...] = ("flutes",)
"""The family that only the validation part of ``heldout_instruments`` plays: a held-out-timbre
part for choices (best step, augmentation), drawn from the families that are not held out for
test. Flutes (flute, whistle, recorder, pan flute, flute+piano) reach every family of styles
and span five ensembles, like a test family; training then hears keyboards, bowed strings,
voices, accordion and marimba only."""


@dataclass(frozen=True)
class SplitItem:
    track: str
    style: str
    work_id: str
    instruments: tuple[str, ...] = ()


def _style_of_group(items: list[SplitItem]) -> str:
    counts = Counter(item.style for item in items)
    return min(counts, key=lambda style: (-counts[style], style))


def default_split(items: list[SplitItem], seed: int, val_fraction: float = 0.15,
                  test_fraction: float = 0.15) -> dict[str, str]:
    """Track -> part, with no work in two parts."""
    groups: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        groups[item.work_id].append(item)
    by_style: dict[str, list[str]] = defaultdict(list)
    for work_id, members in groups.items():
        by_style[_style_of_group(members)].append(work_id)
    parts: dict[str, str] = {}
    for style in sorted(by_style):
        work_ids = sorted(by_style[style])
        random.Random(f"{seed}:split:{style}").shuffle(work_ids)
        total = sum(len(groups[w]) for w in work_ids)
        if len(work_ids) >= 3:  # fewer works than parts: the style only trains
            want = {TEST: max(1, round(total * test_fraction)), VAL: max(1, round(total * val_fraction))}
        else:
            want = {TEST: 0, VAL: 0}
        filled: Counter = Counter()
        for index, work_id in enumerate(work_ids):
            part = next((p for p in (TEST, VAL) if filled[p] < want[p]), TRAIN)
            if index == len(work_ids) - 1 and filled[TRAIN] == 0:
                part = TRAIN  # the last work trains if nothing else did
            filled[part] += len(groups[work_id])
            for member in groups[work_id]:
                parts[member.track] = part
    return parts


def heldout_split(items: list[SplitItem], default_parts: dict[str, str], heldout: set[str]) -> dict[str, str]:
    """The default parts, with every work that touches a held-out style moved to test."""
    touched = {item.work_id for item in items if item.style in heldout}
    return {item.track: TEST if item.work_id in touched else default_parts[item.track] for item in items}


def heldout_instruments_split(items: list[SplitItem], default_parts: dict[str, str],
                              test_families: Iterable[str] = HELDOUT_INSTRUMENT_FAMILIES,
                              val_families: Iterable[str] = VALIDATION_INSTRUMENT_FAMILIES) -> dict[str, str]:
    """Whole instrument families out of training: ``test_families`` in test, ``val_families`` in val.

    A work that any rendition of a test family touches goes to test whole; else one that a
    validation family touches goes to val whole; the other works keep test if the default
    split tests them (the seen-instrument tracks that new-instrument queries search) and
    train otherwise (the default val part trains: its choices are made on new timbres here).
    So train and val never play a test-family instrument and train never a val-family one.
    """
    test_families, val_families = set(test_families), set(val_families)
    if test_families & val_families:
        raise ValueError(f"families both in test and val: {sorted(test_families & val_families)}")
    touched_test = {item.work_id for item in items if families_of(item.instruments) & test_families}
    touched_val = {item.work_id for item in items if families_of(item.instruments) & val_families}
    parts = {}
    for item in items:
        if item.work_id in touched_test:
            parts[item.track] = TEST
        elif item.work_id in touched_val:
            parts[item.track] = VAL
        else:
            parts[item.track] = TEST if default_parts[item.track] == TEST else TRAIN
    return parts


def assign_splits(items: list[SplitItem], seed: int, heldout: set[str]) -> dict[str, dict[str, str]]:
    default_parts = default_split(items, seed)
    return {DEFAULT_SPLIT: default_parts, HELDOUT_SPLIT: heldout_split(items, default_parts, heldout),
            HELDOUT_INSTRUMENTS_SPLIT: heldout_instruments_split(items, default_parts)}
