"""Datagrams per node on a simulated network: flat in N, bounded at an epoch boundary."""

from __future__ import annotations

from twisted.internet.task import Clock

from stretchfs.config import PingSettings
from stretchfs.pingnet.packet import KINDS
from tests.pingnet.simnet import SimCluster

K = 4
ROUNDS_PER_SECOND = 2   # interval 0.5 s


def _sent(clock, size: int, start: float, seconds: float) -> dict[int, float]:
    """Datagrams sent per node per second by kind, measured from `start` (clock time,
    after a settling second; epoch boundaries every 120 s, both epochs within 5 s of one)
    for `seconds`.  No node may be held down meanwhile."""
    clock.advance(start - 1.0 - clock.seconds())
    sim = SimCluster(clock, size, settings=PingSettings(observers=K))
    sim.start()
    sim.run(1.0, step=0.01)
    sim.net.record()
    sim.run(seconds, step=0.01)
    sent = {kind: sum(1 for _, _, data in sim.net.sent or [] if data[1] == kind)
            / seconds / size for kind in KINDS}
    assert all(not sim.down_in(n) for n in sim.nodes)
    sim.stop()
    return sent


def test_datagrams_per_node_do_not_grow_with_the_cluster() -> None:
    """Between epoch boundaries a node sends the same datagrams per second at N = 12, 24
    and 48: K PINGs and K PONGs per interval (no two nodes observe each other)."""
    totals = [sum(_sent(Clock(), size, 20.0, 5.0).values()) for size in (12, 24, 48)]
    assert totals == [2 * K * ROUNDS_PER_SECOND] * 3, totals


def test_an_epoch_boundary_at_most_doubles_the_datagrams(clock) -> None:
    """Across an epoch boundary (both epochs' targets probed for 10 s) a node sends at
    most 4 K / interval datagrams per second, and more than between boundaries."""
    sent = sum(_sent(clock, 24, 114.0, 12.0).values())
    assert 2 * K * ROUNDS_PER_SECOND < sent <= 4 * K * ROUNDS_PER_SECOND
