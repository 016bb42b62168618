"""A simulated loopback network of PingNet nodes on one task.Clock and one FakeRedisStore."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from stretchfs.config import PingSettings
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.pingnet.service import PingNet
from tests.fakes import FakeRedisStore
from tests.helpers import CLUSTER_KEY
from tests.pingnet import tallymodel

LATENCY_SECONDS = 0.001


class _Address:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port


class SimTransport(FakeDatagramTransport):
    """Records what is written and hands it to the simulated network."""

    def __init__(self, net: "SimNetwork", addr: tuple[str, int]) -> None:
        super().__init__()
        self.net = net
        self.addr = addr

    def write(self, packet: bytes, addr: Any = None) -> None:
        """Send `packet` to `addr` through the network."""
        super().write(packet, addr)
        self.net.send(self.addr, addr, packet)


class SimPort:
    """What listenUDP returns."""

    def __init__(self, net: "SimNetwork", addr: tuple[str, int]) -> None:
        self.net = net
        self.addr = addr

    def getHost(self) -> _Address:
        """The bound address."""
        return _Address(*self.addr)

    def stopListening(self) -> None:
        """Unbind."""
        self.net.bound.pop(self.addr, None)


class SimReactor:
    """A Clock that can also listenUDP on the simulated network."""

    def __init__(self, net: "SimNetwork", clock: Clock) -> None:
        self.net = net
        self.clock = clock

    def seconds(self) -> float:
        """The shared clock."""
        return self.clock.seconds()

    def callLater(self, delay: float, fn: Any, *args: Any, **kw: Any) -> Any:
        """Schedule on the shared clock."""
        return self.clock.callLater(delay, fn, *args, **kw)

    def getDelayedCalls(self) -> list[Any]:
        """Pending calls of the shared clock."""
        return self.clock.getDelayedCalls()

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> SimPort:
        """Bind `protocol` on (interface, port) of the simulated network."""
        addr = (interface, port)
        self.net.bound[addr] = protocol
        protocol.makeConnection(SimTransport(self.net, addr))
        return SimPort(self.net, addr)


@dataclass
class SimNetwork:
    """Delivers datagrams between bound protocols after LATENCY_SECONDS, with faults."""

    clock: Clock
    bound: dict[tuple[str, int], Any] = field(default_factory=dict)
    frozen: set[tuple[str, int]] = field(default_factory=set)
    cut: set[frozenset[tuple[str, int]]] = field(default_factory=set)
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    delivered: int = 0
    sent: list[tuple[tuple[str, int], tuple[str, int], bytes]] | None = None

    def record(self) -> None:
        """From now on keep every datagram that goes on the wire as (src, dst, packet) in `sent`."""
        self.sent = []

    def send(self, src: tuple[str, int], dst: tuple[str, int], packet: bytes) -> None:
        """Queue one datagram unless a fault eats it."""
        if src in self.frozen or frozenset((src, dst)) in self.cut:
            return
        if self.loss and self.rng.random() < self.loss:
            return
        if self.sent is not None:
            self.sent.append((src, dst, packet))
        self.clock.callLater(LATENCY_SECONDS, self._deliver, src, dst, packet)

    def _deliver(self, src: tuple[str, int], dst: tuple[str, int], packet: bytes) -> None:
        protocol = self.bound.get(dst)
        if protocol is None or dst in self.frozen:
            return
        self.delivered += 1
        protocol.datagramReceived(packet, src)


@dataclass
class SimCluster:
    """N PingNet nodes ("n1".."nN") wired to one network, clock and Redis."""

    clock: Clock
    size: int
    settings: PingSettings = field(default_factory=PingSettings)
    sites: list[str] | None = None   # site of each node, in order (None: all "local")
    net: SimNetwork = field(init=False)
    redis: FakeRedisStore = field(init=False)
    nodes: dict[str, PingNet] = field(default_factory=dict)
    records: list[PeerRecord] = field(default_factory=list)
    unknown_senders: list[str] = field(default_factory=list)  # nodes pinged by a stranger

    def __post_init__(self) -> None:
        self.net = SimNetwork(self.clock)
        self.redis = tallymodel.install(FakeRedisStore(self.clock))
        reactor = SimReactor(self.net, self.clock)
        sites = self.sites or ["local"] * self.size
        self.records = [PeerRecord(name="n{}".format(i + 1), role="store", host="10.0.0.1",
                                   port=8000 + i, ping_port=9000 + i, site=sites[i])
                        for i in range(self.size)]
        for i, record in enumerate(self.records):
            peers = Peers(self_name=record.name)
            peers.set_registry(self.records)
            settings = replace(self.settings, port=record.ping_port)
            self.nodes[record.name] = PingNet(
                settings, self_name=record.name, host=record.host, cluster_key=CLUSTER_KEY,
                peers=peers, redis=self.redis, redis_prefix="sfs:", reactor=reactor,
                metrics_registry=CollectorRegistry(), rng=random.Random(i),
                on_unknown_sender=lambda name=record.name: self.unknown_senders.append(name))

    def addr(self, name: str) -> tuple[str, int]:
        """The UDP address of node `name`."""
        record = next(r for r in self.records if r.name == name)
        return (record.host, record.ping_port)

    def start(self) -> None:
        """Start every node."""
        for node in self.nodes.values():
            node.startService()

    def stop(self) -> None:
        """Stop every running node."""
        for node in self.nodes.values():
            if node.running:
                node.stopService()

    def run(self, seconds: float, step: float = 0.005) -> None:
        """Advance the clock in small steps."""
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)

    def freeze(self, name: str) -> None:
        """Node `name` neither sends nor receives (crash or hang)."""
        self.net.frozen.add(self.addr(name))

    def thaw(self, name: str) -> None:
        """Node `name` is back."""
        self.net.frozen.discard(self.addr(name))

    def sever(self, a: str, b: str) -> None:
        """Cut the path between `a` and `b` in both directions."""
        self.net.cut.add(frozenset((self.addr(a), self.addr(b))))

    def partition(self, side: set[str]) -> None:
        """Cut every path between the nodes in `side` and all the others."""
        for a in side:
            for b in set(self.nodes) - side:
                self.sever(a, b)

    def heal(self) -> None:
        """Restore every cut path."""
        self.net.cut.clear()

    def down_in(self, observer: str) -> set[str]:
        """Peers that `observer` considers unavailable."""
        return {r.name for r in self.records if self.nodes[observer].peers.is_down(r.name)}
