"""Team-draft interleaving: the merge rules, determinism per request id, and the balance of the coins."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.team_draft import TEAM_A, TEAM_B, coin_flips, interleave, rounds_for, team_draft


def test_worked_example_from_the_paper_shape():
    # A = a b c d, B = b e a f; round 1 A first: a (A), b (B); round 2 B first: e (B), c (A)
    draft = team_draft(list("abcd"), list("bead"), 4, [True, False])
    assert draft.items(list("abcd"), list("bead")) == ["a", "b", "e", "c"]
    assert draft.teams == (TEAM_A, TEAM_B, TEAM_B, TEAM_A)


def test_a_track_both_rankers_hold_is_drafted_once_by_the_team_that_took_it():
    a, b = [1, 2, 3], [1, 2, 3]
    draft = team_draft(a, b, 3, [False, True])
    assert draft.items(a, b) == [1, 2, 3]
    assert draft.teams == (TEAM_B, TEAM_A, TEAM_A)  # B took 1; A took 2 (its best left); round 2 A first: 3


def test_one_team_running_out_leaves_the_other_to_fill_the_page():
    draft = team_draft([7], [1, 2, 3, 4], 4, [True, True])
    assert draft.items([7], [1, 2, 3, 4]) == [7, 1, 2, 3]
    assert draft.teams == (TEAM_A, TEAM_B, TEAM_B, TEAM_B)
    assert len(team_draft([1], [1], 5, [True] * 3).picks) == 1  # both used up: the page is shorter than k


def test_too_few_coins_is_an_error():
    with pytest.raises(ValueError, match="coins"):
        team_draft([1, 2, 3], [4, 5, 6], 3, [True])


def test_same_request_same_page_and_different_requests_differ():
    a, b = list(range(20)), list(range(10, 30))
    request = uuid.uuid4()
    assert interleave(request, a, b, 10) == interleave(uuid.UUID(str(request)), a, b, 10)
    pages = {interleave(uuid.uuid4(), a, b, 10).teams for _ in range(50)}
    assert len(pages) > 10


def test_coins_are_fair_and_independent_across_rounds():
    flips = np.array([coin_flips(uuid.uuid4(), 8) for _ in range(20_000)])
    assert np.all(np.abs(flips.mean(axis=0) - 0.5) < 0.015)  # 4.2 sigma at n = 20,000
    assert abs(np.corrcoef(flips[:, 0], flips[:, 1])[0, 1]) < 0.03
    assert rounds_for(10) == 5 and rounds_for(11) == 6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), unique=True, max_size=15), st.lists(st.integers(0, 30), unique=True, max_size=15),
       st.integers(0, 20), st.lists(st.booleans(), min_size=20, max_size=20))
def test_team_draft_invariants(a, b, k, coins):
    draft = team_draft(a, b, k, coins)
    items = draft.items(a, b)
    assert len(items) == len(set(items)) == min(k, len(set(a) | set(b)))
    # each team's picks keep its own order, and each pick is its team's best track not already above it
    for team in (TEAM_A, TEAM_B):
        ranks = [p.rank for p in draft.picks if p.team == team]
        assert ranks == sorted(ranks)
    for position, pick in enumerate(draft.picks):
        ranked = a if pick.team == TEAM_A else b
        above = set(items[:position])
        assert ranked[pick.rank] not in above
        assert all(x in above for x in ranked[:pick.rank])
    # while both teams can still add, they stay within one pick of each other (the draft's balance)
    counts = {TEAM_A: 0, TEAM_B: 0}
    for pick in draft.picks:
        counts[pick.team] += 1
        if set(a) <= set(items) or set(b) <= set(items):
            break
        assert abs(counts[TEAM_A] - counts[TEAM_B]) <= 1
