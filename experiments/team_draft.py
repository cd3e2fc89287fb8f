"""Team-draft interleaving (Radlinski, Kurup and Joachims 2008): one page merged from two rankers' lists.

Plain Python, no Django: serving, the simulator's Monte Carlo and the tests call the same functions.

The draft goes in rounds. In each round a coin decides which team picks first; then each
team in turn adds its highest-ranked track that is not on the page yet, until the page holds
k tracks. Every item remembers the team that drafted it (``TEAM_A`` = the experiment's control
variant, ``TEAM_B`` = the other), and a click credits that team only. A track that both rankers
would show is credited to whichever team drafted it: with fair coins each team drafts such a
track equally often, so shared tracks add noise to the credits but no bias (Chapelle, Joachims,
Radlinski and Yue 2012 discuss the crediting choices; docs/interleaving.md says why we keep this one).

The coins are derived from the request id (``coin_flips``), so the same request always gets
the same page: a page can be rebuilt from its request id and the two lists, and serving (which
runs the same draft inside its SQL statement: the function ``experiments_team_draft`` of migration
0011_interleaving) is checked against this module.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

TEAM_A = 1  # the control variant's ranker (stored as 1 in Page.teams)
TEAM_B = 2  # the other variant's ranker
MAX_ROUNDS = 512  # 64 bytes of hash: k up to 1,024 items


def rounds_for(k: int) -> int:
    """Rounds a page of k items needs: two picks per round."""
    return (int(k) + 1) // 2


def coin_flips(request_id: uuid.UUID, rounds: int) -> tuple[bool, ...]:
    """Per round: True when team A picks first. Bits of BLAKE2b(request id), so reproducible per request.

    A keyed hash of the request id, not the id's own bits: version-7 ids start with a timestamp and
    their random tail is the client's to see, so their bits must not decide the coin directly.
    """
    if not 0 <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must lie in [0, {MAX_ROUNDS}], got {rounds}")
    size = max(1, (rounds + 7) // 8)
    digest = hashlib.blake2b(request_id.bytes, digest_size=size, person=b"team-draft-coin").digest()
    bits = int.from_bytes(digest, "big")
    return tuple(bool((bits >> (8 * size - 1 - r)) & 1) for r in range(rounds))


@dataclass(frozen=True)
class Pick:
    """One position of the merged page: which team drafted it and at what rank (0-based) in that team's list."""

    team: int
    rank: int


@dataclass(frozen=True)
class Draft:
    """The merged page, position by position."""

    picks: tuple[Pick, ...]

    @property
    def teams(self) -> tuple[int, ...]:
        return tuple(p.team for p in self.picks)

    def items(self, list_a: Sequence, list_b: Sequence) -> list:
        """The drafted items themselves, in page order."""
        return [(list_a if p.team == TEAM_A else list_b)[p.rank] for p in self.picks]


def team_draft(list_a: Sequence[Hashable], list_b: Sequence[Hashable], k: int,
               a_first: Sequence[bool]) -> Draft:
    """Merge two ranked lists (best first, each without repeats) into at most k items by team draft.

    ``a_first[r]``: team A picks first in round r. When one team has nothing left to add, the
    other keeps picking alone (the page still fills up to k, or until both lists are used up).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if len(a_first) < rounds_for(k):
        raise ValueError(f"{rounds_for(k)} coins needed for k = {k}, got {len(a_first)}")
    lists = {TEAM_A: list_a, TEAM_B: list_b}
    cursor = {TEAM_A: 0, TEAM_B: 0}
    on_page: set[Hashable] = set()
    picks: list[Pick] = []

    def pick(team: int) -> bool:
        ranked, i = lists[team], cursor[team]
        while i < len(ranked) and ranked[i] in on_page:
            i += 1
        cursor[team] = i + 1
        if i >= len(ranked):
            return False
        on_page.add(ranked[i])
        picks.append(Pick(team, i))
        return True

    round_ = 0
    while len(picks) < k:
        order = (TEAM_A, TEAM_B) if a_first[min(round_, len(a_first) - 1)] else (TEAM_B, TEAM_A)
        added = False
        for team in order:
            if len(picks) < k:
                added = pick(team) or added
        if not added:
            break
        round_ += 1
    return Draft(tuple(picks))


def interleave(request_id: uuid.UUID, list_a: Sequence[Hashable], list_b: Sequence[Hashable], k: int) -> Draft:
    """The page a request gets: ``team_draft`` with the request's own coins."""
    return team_draft(list_a, list_b, k, coin_flips(request_id, rounds_for(k)))
