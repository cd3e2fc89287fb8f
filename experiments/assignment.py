"""Deterministic, sticky assignment of users to experiment variants (no Django).

A user's bucket is a hash of (experiment salt, purpose, user id) into ``BUCKETS`` slots:
the same user always lands in the same bucket, so assignment needs no stored state, and
different salts give independent buckets, so two experiments split users independently.
Inclusion in the traffic fraction and the choice of variant use two separate hashes, so
the variant split inside the experiment does not depend on the fraction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000
_MASK_63 = (1 << 63) - 1


def user_key(user_id: str) -> int:
    """Stable 63-bit key of a user string, a non-negative value that fits a signed bigint."""
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8, person=b"crossmusim-user").digest()
    return int.from_bytes(digest, "big") & _MASK_63


def bucket(salt: str, purpose: str, user_id: str) -> int:
    """The user's slot in 0..BUCKETS-1 for one experiment (salt) and one purpose."""
    digest = hashlib.blake2b(f"{salt}\x1f{purpose}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class ArmSpec:
    """One variant as the assignment sees it: a key and an integer weight."""

    key: str
    weight: int
    is_control: bool = False

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"variant {self.key!r} needs a positive weight, got {self.weight}")


@dataclass(frozen=True)
class AssignmentResult:
    variant_key: str
    in_experiment: bool  # False: outside the traffic fraction, served the control, not analysed


def control_key(arms: Sequence[ArmSpec]) -> str:
    """The default arm: the one marked control, else the first."""
    if not arms:
        raise ValueError("an experiment needs at least one variant")
    return next((arm.key for arm in arms if arm.is_control), arms[0].key)


def in_traffic(salt: str, user_id: str, traffic_fraction: float) -> bool:
    return bucket(salt, "traffic", user_id) < round(traffic_fraction * BUCKETS)


def variant_for_bucket(slot: int, arms: Sequence[ArmSpec]) -> str:
    """Walk the cumulative weights scaled to BUCKETS: arm i owns slots [c_i, c_{i+1})."""
    total = sum(arm.weight for arm in arms)
    cumulative = 0
    for arm in arms:
        cumulative += arm.weight
        if slot * total < cumulative * BUCKETS:
            return arm.key
    return arms[-1].key


def assign_variant(salt: str, user_id: str, arms: Sequence[ArmSpec], traffic_fraction: float = 1.0) -> AssignmentResult:
    """The user's variant in one experiment; users outside the traffic fraction get the control."""
    if not arms:
        raise ValueError("an experiment needs at least one variant")
    if not in_traffic(salt, user_id, traffic_fraction):
        return AssignmentResult(variant_key=control_key(arms), in_experiment=False)
    return AssignmentResult(variant_key=variant_for_bucket(bucket(salt, "variant", user_id), arms), in_experiment=True)
