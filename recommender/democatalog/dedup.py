"""Group tracks of one work under a ``work_id`` before the split.

Two tracks are one work when they share any key: the corpus file (several excerpts of
one movement), a Palestrina mass, a normalised title within a family of styles (one
tune in Ryan's and in O'Neill's), or the opening intervals of the melody within a family
(Essen variants, one chorale melody harmonised twice). Grouping is transitive
(union-find), so a split that keeps each ``work_id`` in one part keeps every copy of a
tune out of the other parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def assign_work_ids(items: Iterable[tuple[str, list[str]]]) -> dict[str, str]:
    """Map each item id to its work id, given (item id, keys it shares with its copies and variants).

    The work id is a short hash of the smallest key in the group, so it is stable for one
    selection of tracks and readable in logs.
    """
    forest = _UnionFind()
    items = list(items)
    for item_id, keys in items:
        forest.find(f"item:{item_id}")
        for key in keys:
            if key:
                forest.union(f"item:{item_id}", f"key:{key}")
    members: dict[str, list[str]] = {}
    for item_id, keys in items:
        members.setdefault(forest.find(f"item:{item_id}"), []).extend(k for k in keys if k)
    names = {}
    for root, keys in members.items():
        anchor = min(keys) if keys else root
        names[root] = "w" + hashlib.sha1(anchor.encode()).hexdigest()[:10]
    return {item_id: names[forest.find(f"item:{item_id}")] for item_id, _ in items}
