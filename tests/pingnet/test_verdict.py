"""Majority arithmetic and flap dampening."""

from __future__ import annotations

import pytest

from stretchfs.pingnet.verdict import Dampener, count_votes, needed_votes


@pytest.mark.parametrize("peers,needed", [(1, 0), (2, 1), (3, 2), (5, 3), (16, 8)])
def test_majority_of_the_other_peers(peers: int, needed: int) -> None:
    """With N peers, N-1 can vote on a target and a strict majority of them is needed."""
    names = ["p{}".format(i) for i in range(peers)]
    target = names[-1]
    voters = [n for n in names if n != target]
    if peers == 1:
        tally = count_votes(target, names, names, names[0], [])
        assert tally.eligible == 0 and not tally.down
        return
    assert needed_votes(len(voters)) == needed
    short = count_votes(target, names, names, names[0], voters[:needed - 1])
    enough = count_votes(target, names, names, names[0], voters[:needed])
    assert not short.down
    assert enough.down and enough.needed == needed


def test_votes_of_unavailable_or_unknown_voters_do_not_count() -> None:
    """Only available, active peers other than the target count as voters."""
    names = ["a", "b", "c", "d", "e"]
    available = ["a", "b", "c", "e"]  # d is down: the eligible voters are a, b, c
    tally = count_votes("e", names, available, "a", ["d", "x", "a", "b"])
    assert tally.voters == ("a", "b") and tally.eligible == 3 and tally.down


def test_two_node_cluster_each_side_decides_alone() -> None:
    """In a two-node cluster one vote (the other node's) is a majority."""
    tally = count_votes("b", ["a", "b"], ["a", "b"], "a", ["a"])
    assert tally.eligible == 1 and tally.down


def test_first_down_comes_back_at_once() -> None:
    """A peer down for the first time is readmitted as soon as the votes are gone."""
    damp = Dampener(flap_window=20, flap_hold=30)
    assert damp.update("p", True, 100.0) is False
    assert damp.update("p", False, 103.0) is True


def test_flapping_peer_is_held_out_with_a_growing_hold() -> None:
    """A peer down again soon after readmission must answer for flap_hold, doubling each time."""
    damp = Dampener(flap_window=20, flap_hold=30)
    damp.update("p", True, 100.0)
    damp.update("p", False, 101.0)
    assert damp.update("p", True, 103.0) is False
    assert damp.states["p"].hold == 30
    assert damp.update("p", False, 104.0) is None
    assert damp.update("p", True, 110.0) is None      # down again: the hold restarts
    assert damp.update("p", False, 111.0) is None
    assert damp.update("p", False, 140.9) is None
    assert damp.update("p", False, 141.0) is True
    assert damp.update("p", True, 150.0) is False
    assert damp.states["p"].hold == 60


def test_flap_count_resets_after_a_quiet_window() -> None:
    """A peer that stayed available longer than flap_window starts again without a hold."""
    damp = Dampener(flap_window=20, flap_hold=30)
    damp.update("p", True, 100.0)
    damp.update("p", False, 101.0)
    damp.update("p", True, 130.0)
    assert damp.states["p"].hold == 0
