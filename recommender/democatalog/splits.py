"""Deterministic train/val/test splits, stratified by style and grouped by work.

``default``: per style, whole works go to test until about 15 % of the style's tracks,
then to val, the rest to train (each part gets at least one work once a style has three).
``heldout_styles``: the same parts, except that every work touching a held-out style
moves to test, so those styles are never seen in training.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

TRAIN, VAL, TEST = "train", "val", "test"
DEFAULT_SPLIT = "default"
HELDOUT_SPLIT = "heldout_styles"


@dataclass(frozen=True)
class SplitItem:
    track: str
    style: str
    work_id: str


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


def assign_splits(items: list[SplitItem], seed: int, heldout: set[str]) -> dict[str, dict[str, str]]:
    default_parts = default_split(items, seed)
    return {DEFAULT_SPLIT: default_parts, HELDOUT_SPLIT: heldout_split(items, default_parts, heldout)}
