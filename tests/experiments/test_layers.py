"""Layers (pure): free ranges, allocation of free buckets only, the owner table, and the legacy hash mapping."""

from __future__ import annotations

import pytest

from experiments.assignment import BUCKETS, in_traffic
from experiments.layers import (
    FREE,
    BucketRange,
    OverAllocationError,
    allocate,
    buckets_for_share,
    describe,
    free_count,
    free_ranges,
    layer_bucket,
    owner_table,
)


def test_free_ranges_are_the_complement():
    taken = [BucketRange(2500, 5000), BucketRange(0, 1000)]
    assert free_ranges(taken) == [BucketRange(1000, 2500), BucketRange(5000, BUCKETS)]
    assert free_count(taken) == BUCKETS - 3500
    assert free_ranges([]) == [BucketRange(0, BUCKETS)]
    with pytest.raises(ValueError, match="overlap"):
        free_ranges([BucketRange(0, 100), BucketRange(50, 200)])


def test_allocation_is_contiguous_in_the_smallest_gap_that_fits():
    taken = [BucketRange(1000, 2000), BucketRange(2500, 9000)]  # gaps: 0-999, 2000-2499, 9000-9999
    assert allocate(taken, 400) == [BucketRange(2000, 2400)]  # the 500-bucket gap, not the 1000-bucket ones
    assert allocate(taken, 800) == [BucketRange(0, 800)]
    assert allocate([], 2500) == [BucketRange(0, 2500)]


def test_a_fragmented_layer_gives_a_listed_set_of_free_buckets():
    taken = [BucketRange(1000, 2000), BucketRange(2500, 9000)]
    ranges = allocate(taken, 2200)
    assert ranges == [BucketRange(0, 1000), BucketRange(2000, 2500), BucketRange(9000, 9700)]
    assert sum(r.size for r in ranges) == 2200
    owners = owner_table([taken, ranges])  # never a bucket another holder has
    assert owners.count(0) == 7500 and owners.count(1) == 2200 and owners.count(FREE) == 300


def test_over_allocation_is_refused_with_both_figures():
    with pytest.raises(OverAllocationError, match=r"3000 free buckets \(30.00% of traffic\).*4000 \(40.00%\)"):
        allocate([BucketRange(0, 7000)], 4000)
    with pytest.raises(ValueError):
        allocate([], 0)


def test_owner_table_refuses_a_bucket_claimed_twice():
    with pytest.raises(ValueError, match="claimed twice"):
        owner_table([[BucketRange(0, 10)], [BucketRange(5, 20)]])


def test_shares_and_descriptions():
    assert buckets_for_share(0.25) == 2500 and buckets_for_share(0.00005) == 0 and buckets_for_share(1.0) == BUCKETS
    with pytest.raises(ValueError):
        buckets_for_share(1.2)
    assert describe([BucketRange(5000, 6000), BucketRange(0, 2500)]) == "0-2499, 5000-5999"
    with pytest.raises(ValueError):
        BucketRange(10, 10)


@pytest.mark.parametrize("fraction", [0.1, 0.37, 1.0])
def test_the_layer_hash_is_the_old_traffic_hash(fraction):
    """A layer salted with an old experiment's salt, giving it [0, fraction x 10,000), holds the same users."""
    users = [f"listener-{i}" for i in range(20_000)]
    end = buckets_for_share(fraction)
    assert [layer_bucket("legacy-salt", u) < end for u in users] == [in_traffic("legacy-salt", u, fraction)
                                                                      for u in users]
