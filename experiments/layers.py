"""Traffic layers: a placement's 10,000 buckets and which experiment holds which (no Django).

Every placement has one layer: a user's bucket there is ``bucket(layer salt, "traffic", user)``.
An experiment, when it starts, is given a set of free buckets (its traffic share) and keeps
them until it stops, so experiments of one layer never share a user, and starting or stopping
one never moves another's users. Inside its buckets, an experiment splits users over its
variants with its own salt (``assignment.variant_for_bucket``), as it always did.

The layer hash is the one the single-experiment platform used for its traffic fraction, with
purpose ``"traffic"``: a placement whose layer salt is that experiment's salt, and that gives it
the buckets [0, fraction x 10,000), puts exactly the same users in it (migration 0013_placements does this).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from experiments.assignment import BUCKETS, bucket

LAYER_PURPOSE = "traffic"
FREE = -1


class OverAllocationError(ValueError):
    """The layer has fewer free buckets than an experiment asks for; the message gives both figures."""


@dataclass(frozen=True, order=True)
class BucketRange:
    """Buckets ``start`` .. ``end - 1`` of a layer (half-open, like ``range``)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= BUCKETS:
            raise ValueError(f"a bucket range needs 0 <= start < end <= {BUCKETS}, got [{self.start}, {self.end})")

    @property
    def size(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.start}-{self.end - 1}"


def layer_bucket(layer_salt: str, user_id: str) -> int:
    """The user's bucket in a placement's layer, 0..BUCKETS-1."""
    return bucket(layer_salt, LAYER_PURPOSE, user_id)


def buckets_for_share(share: float) -> int:
    """A traffic share in [0, 1] as a number of buckets (1 bucket = 0.01 % of the placement's users)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a traffic share lies in [0, 1], got {share}")
    return round(share * BUCKETS)


def describe(ranges: Iterable[BucketRange]) -> str:
    """'0-2499, 5000-5999' (what the admin shows)."""
    return ", ".join(str(r) for r in sorted(ranges)) or "none"


def free_ranges(taken: Iterable[BucketRange]) -> list[BucketRange]:
    """The complement of ``taken`` in [0, BUCKETS), in order; a ValueError if two taken ranges overlap."""
    free, cursor = [], 0
    for r in sorted(taken):
        if r.start < cursor:
            raise ValueError(f"bucket ranges overlap at {r.start}")
        if r.start > cursor:
            free.append(BucketRange(cursor, r.start))
        cursor = r.end
    if cursor < BUCKETS:
        free.append(BucketRange(cursor, BUCKETS))
    return free


def free_count(taken: Iterable[BucketRange]) -> int:
    return sum(r.size for r in free_ranges(taken))


def allocate(taken: Sequence[BucketRange], size: int) -> list[BucketRange]:
    """``size`` free buckets: one contiguous range if a gap fits it (the smallest such gap, so big gaps stay
    whole for big experiments), else the free ranges in order until the count is reached (a listed set).

    Only free buckets are ever handed out, so an allocation never moves a user of another experiment.
    """
    if size <= 0:
        raise ValueError(f"an experiment needs at least one bucket, got {size}")
    free = free_ranges(taken)
    available = sum(r.size for r in free)
    if size > available:
        raise OverAllocationError(
            f"the layer has {available} free buckets ({available / BUCKETS:.2%} of traffic) and this asks for "
            f"{size} ({size / BUCKETS:.2%})")
    fitting = [r for r in free if r.size >= size]
    if fitting:
        gap = min(fitting, key=lambda r: (r.size, r.start))
        return [BucketRange(gap.start, gap.start + size)]
    chosen, needed = [], size
    for r in free:
        take = min(needed, r.size)
        chosen.append(BucketRange(r.start, r.start + take))
        needed -= take
        if needed == 0:
            break
    return chosen


def owner_table(holders: Sequence[Sequence[BucketRange]]) -> tuple[int, ...]:
    """bucket -> index of its holder in ``holders`` (``FREE`` when none): the serving lookup, one per layer.

    A ValueError when two holders claim the same bucket (the database's exclusion constraint already
    forbids it; this keeps a hand-edited table from serving one user two experiments)."""
    owners = [FREE] * BUCKETS
    for index, ranges in enumerate(holders):
        for r in ranges:
            if any(owners[b] != FREE for b in range(r.start, r.end)):
                raise ValueError(f"bucket range {r} is claimed twice")
            owners[r.start:r.end] = [index] * r.size
    return tuple(owners)
