"""The Prober on its own: what it sends, what it reports to the judge, silence."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry
from twisted.internet.testing import FakeDatagramTransport

from stretchfs.config import PingSettings
from stretchfs.pingnet.metrics import PingMetrics
from stretchfs.pingnet.observers import Rotation
from stretchfs.pingnet.packet import NO_TARGET, PING, Packet, decode, derive_key, encode, node_id
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.pingnet.probe import Prober
from tests.helpers import CLUSTER_KEY


def _prober(clock) -> tuple[Prober, FakeDatagramTransport, list[tuple]]:
    peers = Peers(self_name="n1")
    peers.set_registry([PeerRecord(name=n, role="store", host="10.0.0.1", port=1,
                                   ping_port=9000 + i) for i, n in enumerate(["n1", "n2", "n3"])])
    seen: list[tuple] = []
    prober = Prober(PingSettings(), self_name="n1", cluster_key=CLUSTER_KEY, peers=peers,
                    clock=clock, metrics=PingMetrics(CollectorRegistry()),
                    rng=random.Random(1), rotation=Rotation(10, 120.0, 5.0),
                    observe=lambda *view: seen.append(view),
                    on_unknown_sender=lambda: None)
    transport = FakeDatagramTransport()
    prober.makeConnection(transport)
    prober.start()
    return prober, transport, seen


def test_round_pings_every_peer_and_reports_the_targets(clock) -> None:
    """A round sends one PING addressed to each peer and tells the judge whom it probes."""
    prober, transport, seen = _prober(clock)
    prober.round()
    key = derive_key(CLUSTER_KEY)
    sent = {addr: decode(key, data, node_id({9001: "n2", 9002: "n3"}[addr[1]]))
            for data, addr in transport.written}
    assert set(sent) == {("10.0.0.1", 9001), ("10.0.0.1", 9002)}
    assert {p.kind for p in sent.values()} == {PING}
    assert seen == [(["n2", "n3"], set(), set(), False)]
    prober.stop()
    assert clock.getDelayedCalls() == []


def test_a_silent_prober_sends_nothing_not_even_a_pong(clock) -> None:
    """Once silent the prober reports it, cancels its probes and answers no PING."""
    prober, transport, seen = _prober(clock)
    prober.round()
    prober.set_silent(True)
    assert seen[-1] == (["n2", "n3"], set(), set(), True)
    assert clock.getDelayedCalls() == []
    before = len(transport.written)
    ping = Packet(kind=PING, sender=node_id("n2"), receiver=node_id("n1"), target=NO_TARGET,
                  seq=int(clock.seconds() * 1e6) + 5, echo=0, stamp=clock.seconds())
    prober.datagramReceived(encode(derive_key(CLUSTER_KEY), ping), ("10.0.0.1", 9001))
    prober.round()
    assert len(transport.written) == before
