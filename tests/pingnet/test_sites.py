"""Sites on a simulated network: a WAN partition between sites takes nobody down."""

from __future__ import annotations

from dataclasses import replace

from stretchfs.config import PingSettings
from stretchfs.pingnet.keys import votes_key
from tests.pingnet.simnet import SimCluster

SITE_SIZE = 8


def _two_sites(clock, sites: bool) -> SimCluster:
    """Two sites of SITE_SIZE nodes (n1..n8 in "east", n9..n16 in "west"), K = 4, rotating
    every 10 s; with `sites` False every node is in the one default site."""
    names = ["east"] * SITE_SIZE + ["west"] * SITE_SIZE if sites else None
    sim = SimCluster(clock, 2 * SITE_SIZE, settings=PingSettings(observers=4, rotate=10.0),
                     sites=names)
    sim.start()
    sim.run(2.0, step=0.01)
    return sim


def _east(sim: SimCluster) -> set[str]:
    return {r.name for r in sim.records[:SITE_SIZE]}


def _falsely_down(sim: SimCluster) -> set[tuple[str, str]]:
    return {(observer, peer) for observer in sim.nodes for peer in sim.down_in(observer)}


def test_a_partition_between_sites_takes_nobody_down(clock) -> None:
    """Cut off from each other for 30 s (three rotations), two sites cast no vote and
    hold no node down on either side, checked every 0.25 s; healed, nothing changes."""
    sim = _two_sites(clock, sites=True)
    sim.partition(_east(sim))
    for _ in range(120):
        sim.run(0.25, step=0.01)
        assert _falsely_down(sim) == set()
    assert not any(k.startswith(b"sfs:ping:votes:") for k in sim.redis.data)
    sim.heal()
    sim.run(2.0, step=0.01)
    assert _falsely_down(sim) == set()
    sim.stop()


def test_without_sites_the_same_partition_votes_the_other_side_down(clock) -> None:
    """The control: with every node in one site the same partition makes each side vote
    members of the other side down, node by node (what sites prevent)."""
    sim = _two_sites(clock, sites=False)
    sim.partition(_east(sim))
    sim.run(5.0, step=0.01)
    assert _falsely_down(sim)
    sim.stop()


def test_a_crash_inside_a_partitioned_site_is_seen_by_both_sides(clock) -> None:
    """During the partition a node that dies is voted down by its own site's observers,
    and the other site (sharing only the down set) sees it down too, within 2 s."""
    sim = _two_sites(clock, sites=True)
    sim.partition(_east(sim))
    sim.run(2.0, step=0.01)
    sim.freeze("n3")
    sim.run(2.0, step=0.01)
    assert all(sim.down_in(n) == {"n3"} for n in sim.nodes if n != "n3")
    voters = set(sim.redis.data.get(votes_key("sfs:", "n3").encode(), {}))
    assert voters and all(sim.records[int(v.decode()[1:]) - 1].site == "east" for v in voters)
    sim.stop()


def test_nodes_that_disagree_about_a_site_hold_nobody_down(clock) -> None:
    """When some nodes' registry copies put n5 and n12 in the other site (a move not yet
    downloaded everywhere), rings differ for that period but nobody is held down."""
    sim = _two_sites(clock, sites=True)
    moved = [replace(r, site={"east": "west", "west": "east"}[r.site])
             if r.name in ("n5", "n12") else r for r in sim.records]
    for name in ("n1", "n2", "n9", "n10", "n5"):
        sim.nodes[name].peers.set_registry(moved)
    for _ in range(60):
        sim.run(0.25, step=0.01)
        assert _falsely_down(sim) == set()
    sim.stop()
