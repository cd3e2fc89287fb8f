"""The ``heldout_instruments`` split: whole instrument families out of training, another out of it for choices."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from recommender.democatalog.instruments import ENSEMBLES, families_of
from recommender.democatalog.splits import (
    HELDOUT_INSTRUMENT_FAMILIES,
    HELDOUT_INSTRUMENTS_SPLIT,
    VALIDATION_INSTRUMENT_FAMILIES,
    SplitItem,
    assign_splits,
    heldout_instruments_split,
)
from recommender.democatalog.styles import STYLES


def _items(seed: int) -> list[SplitItem]:
    """Works of the real styles, each rendered 1-3 times with ensembles drawn from the style's own set."""
    rng = random.Random(seed)
    items = []
    for spec in STYLES:
        for work in range(rng.randint(5, 25)):
            for rendition in range(rng.randint(1, 3)):
                ensemble = ENSEMBLES[rng.choice(spec.ensembles)]
                items.append(SplitItem(f"{spec.style}-w{work}-r{rendition}", spec.style, f"{spec.style}-w{work}",
                                       tuple(ensemble.instruments)))
    return items


def _families(item: SplitItem) -> set[str]:
    return families_of(item.instruments)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_families_are_never_trained_on_nor_validated(seed):
    items = _items(seed)
    splits = assign_splits(items, seed=seed, heldout=set())
    parts = splits[HELDOUT_INSTRUMENTS_SPLIT]
    assert parts == assign_splits(items, seed=seed, heldout=set())[HELDOUT_INSTRUMENTS_SPLIT], "deterministic"
    test_families, val_families = set(HELDOUT_INSTRUMENT_FAMILIES), set(VALIDATION_INSTRUMENT_FAMILIES)
    by_work = defaultdict(set)
    for item in items:
        by_work[item.work_id].add(parts[item.track])
        if _families(item) & test_families:
            assert parts[item.track] == "test", item
        if parts[item.track] in ("train", "val"):
            assert not _families(item) & test_families, item
        if parts[item.track] == "train":
            assert not _families(item) & val_families, item
    assert all(len(found) == 1 for found in by_work.values()), "a work in two parts"
    # the validation part is a held-out timbre inside the training families: every val work plays a
    # validation family, and the tracks that do are never seen in training
    val_works = {item.work_id for item in items if parts[item.track] == "val"}
    assert val_works and all(any(_families(i) & val_families for i in items if i.work_id == w) for w in val_works)
    # the seen-instrument tracks the default split tests stay in test: new-instrument queries search them
    default = splits["default"]
    seen_test = [i for i in items if default[i.track] == "test" and parts[i.track] != "val"]
    assert seen_test and all(parts[i.track] == "test" for i in seen_test)
    assert any(parts[i.track] == "train" for i in items)


def test_a_work_touched_by_a_held_out_family_goes_to_test_whole():
    items = [SplitItem("a-piano", "reel", "a", ("piano",)), SplitItem("a-guitar", "reel", "a", ("guitar",)),
             SplitItem("b-piano", "reel", "b", ("piano",)), SplitItem("b-flute", "reel", "b", ("flute",)),
             SplitItem("c-flute-guitar", "reel", "c", ("flute", "guitar")),
             SplitItem("d-piano", "reel", "d", ("piano",)), SplitItem("e-violin", "reel", "e", ("violin",))]
    default = {"a-piano": "train", "a-guitar": "train", "b-piano": "train", "b-flute": "test",
               "c-flute-guitar": "val", "d-piano": "val", "e-violin": "test"}
    parts = heldout_instruments_split(items, default)
    assert parts == {"a-piano": "test", "a-guitar": "test", "b-piano": "val", "b-flute": "val",
                     "c-flute-guitar": "test", "d-piano": "train", "e-violin": "test"}
    with pytest.raises(ValueError, match="both in test and val"):
        heldout_instruments_split(items, default, test_families=("flutes",), val_families=("flutes",))


def test_each_held_out_family_spans_several_ensembles_and_training_keeps_every_style():
    used = {name for spec in STYLES for name in spec.ensembles}
    for family in (*HELDOUT_INSTRUMENT_FAMILIES, *VALIDATION_INSTRUMENT_FAMILIES):
        ensembles = {name for name in used if family in families_of(ENSEMBLES[name].instruments)}
        assert len(ensembles) >= 5, (family, ensembles)
    held = set(HELDOUT_INSTRUMENT_FAMILIES) | set(VALIDATION_INSTRUMENT_FAMILIES)
    for spec in STYLES:
        trained = [n for n in spec.ensembles if not families_of(ENSEMBLES[n].instruments) & held]
        assert len(trained) >= 5, (spec.style, trained)
