"""Assignment: deterministic, close to the weights, independent across experiments, traffic fraction."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy import stats

from experiments.assignment import ArmSpec, assign_variant, bucket, in_traffic, user_key, variant_for_bucket

USERS = [f"user-{i}" for i in range(100_000)]


def test_user_key_is_stable_and_fits_a_signed_bigint():
    assert user_key("alice") == user_key("alice")
    assert user_key("alice") != user_key("alice ")
    keys = {user_key(u) for u in USERS[:20_000]}
    assert len(keys) == 20_000
    assert all(0 <= k < 2**63 for k in keys)


def test_user_key_and_bucket_values_are_pinned():
    # Stored keys and live assignments depend on these values: a change of hash would re-split users.
    assert user_key("alice") == 8605379476538402486
    assert user_key("player-1") == 4572189894812094816
    assert bucket("s", "variant", "alice") == 855


def test_assignment_is_deterministic_and_sticky():
    arms = [ArmSpec("control", 50, True), ArmSpec("treatment", 50)]
    first = [assign_variant("salt-a", u, arms).variant_key for u in USERS[:2000]]
    again = [assign_variant("salt-a", u, arms).variant_key for u in USERS[:2000]]
    assert first == again


@pytest.mark.parametrize("weights", [(50, 50), (90, 10), (1, 2, 7)])
def test_split_matches_the_weights_chi_square(weights):
    arms = [ArmSpec(f"v{i}", w, i == 0) for i, w in enumerate(weights)]
    counts = Counter(assign_variant("chi-square-salt", u, arms).variant_key for u in USERS)
    observed = [counts[f"v{i}"] for i in range(len(weights))]
    expected = [len(USERS) * w / sum(weights) for w in weights]
    p_value = stats.chisquare(observed, expected).pvalue
    assert p_value > 0.001, (observed, expected)
    # and not suspiciously perfect either: a broken hash that alternates would give p ~ 1 every time
    assert sum(observed) == len(USERS)


def test_a_skewed_split_is_detected_by_the_same_check():
    """The chi-square check above can fail: a 52/48 split of 100k users is flagged."""
    observed = [52_000, 48_000]
    assert stats.chisquare(observed, [50_000, 50_000]).pvalue < 0.001


def test_experiments_are_independent():
    arms = [ArmSpec("a", 50, True), ArmSpec("b", 50)]
    pairs = Counter(
        (assign_variant("exp-one", u, arms).variant_key, assign_variant("exp-two", u, arms).variant_key)
        for u in USERS
    )
    table = [[pairs[("a", "a")], pairs[("a", "b")]], [pairs[("b", "a")], pairs[("b", "b")]]]
    p_value = stats.chi2_contingency(table).pvalue
    assert p_value > 0.001, table
    # the same salt, by contrast, gives perfectly dependent splits
    same = Counter(assign_variant("exp-one", u, arms).variant_key == assign_variant("exp-one", u, arms).variant_key
                   for u in USERS[:1000])
    assert same[True] == 1000


def test_traffic_fraction_keeps_out_users_on_the_control():
    arms = [ArmSpec("control", 50, True), ArmSpec("treatment", 50)]
    results = [assign_variant("traffic-salt", u, arms, traffic_fraction=0.2) for u in USERS]
    inside = [r for r in results if r.in_experiment]
    outside = [r for r in results if not r.in_experiment]
    assert abs(len(inside) / len(USERS) - 0.2) < 0.01
    assert all(r.variant_key == "control" for r in outside)
    treated = sum(r.variant_key == "treatment" for r in inside)
    assert abs(treated / len(inside) - 0.5) < 0.02
    assert not any(in_traffic("traffic-salt", u, 0.0) for u in USERS[:1000])
    assert all(in_traffic("traffic-salt", u, 1.0) for u in USERS[:1000])


def test_variant_inside_the_experiment_does_not_depend_on_the_fraction():
    arms = [ArmSpec("control", 50, True), ArmSpec("treatment", 50)]
    for u in USERS[:5000]:
        small = assign_variant("grow-salt", u, arms, traffic_fraction=0.1)
        if small.in_experiment:
            assert assign_variant("grow-salt", u, arms, traffic_fraction=0.9).variant_key == small.variant_key


def test_buckets_cover_the_range_and_weights_map_to_slots():
    slots = {bucket("s", "variant", u) for u in USERS[:50_000]}
    assert min(slots) == 0 and max(slots) == 9999
    arms = [ArmSpec("a", 1), ArmSpec("b", 3)]
    assert variant_for_bucket(0, arms) == "a"
    assert variant_for_bucket(2499, arms) == "a"
    assert variant_for_bucket(2500, arms) == "b"
    assert variant_for_bucket(9999, arms) == "b"


def test_bad_arms_are_refused():
    with pytest.raises(ValueError):
        ArmSpec("x", 0)
    with pytest.raises(ValueError):
        assign_variant("s", "u", [])
