"""build_ping_net + attach_ping_net: a prism or store gets a PingNet and a Registration
that stop cleanly."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService

from stretchfs.config import parse_config
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.wiring import attach_ping_net, build_ping_net
from tests.fakes import FakeRedisStore
from tests.helpers import minimal_config
from tests.pingnet.simnet import SimNetwork, SimReactor
from tests.pingnet.test_registration import FakeMaster


def _wire(top: MultiService, config: Any, *, reactor: Any, master: Any, udp: bool) -> Any:
    """Build the ping net and registration for the listeners already in `top`; attach them."""
    from stretchfs.web.listen import ListeningService

    listeners = [child for child in top if isinstance(child, ListeningService)]
    net, registration = build_ping_net(config, reactor=reactor, redis=FakeRedisStore(reactor),
                                       master=master, peers=Peers(self_name=config.node.name),
                                       metrics_registry=CollectorRegistry(), udp=udp,
                                       listeners=listeners)
    attach_ping_net(top, net, registration, listeners, reactor)
    return net, registration


def test_store_gets_ping_net_and_registration_that_stop_cleanly(clock) -> None:
    """Both services start with the role, and no timer is left after stopService."""
    config = parse_config("store", minimal_config("store", name="store1"), "x.toml", {})
    reactor = SimReactor(SimNetwork(clock), clock)
    top = MultiService()
    master = FakeMaster()
    net, registration = _wire(top, config, reactor=reactor, master=master, udp=True)
    assert net is not None and net.parent is top and registration.parent is top
    top.startService()
    clock.advance(3.0)
    assert master.registered == []  # no HTTP listener bound: registration keeps retrying
    top.stopService()
    assert clock.getDelayedCalls() == []


def test_disabled_ping_net_is_not_attached(clock) -> None:
    """With [ping] enabled = false only the registration is added."""
    text = minimal_config("prism", name="prism1", extra="\n[ping]\nenabled = false\n")
    config = parse_config("prism", text, "x.toml", {})
    top = MultiService()
    net, registration = _wire(top, config, reactor=clock, master=FakeMaster(), udp=True)
    assert net is None and list(top) == [registration]


def test_no_ping_net_without_udp(clock) -> None:
    """A caller without UDP (udp=False) gets only the registration, even with [ping] on."""
    config = parse_config("store", minimal_config("store", name="store1"), "x.toml", {})
    top = MultiService()
    net, registration = _wire(top, config, reactor=clock, master=FakeMaster(), udp=False)
    assert config.ping.enabled and net is None and list(top) == [registration]


def test_ping_net_goes_silent_while_its_own_listener_does_not_answer() -> None:
    """The self-check connects to the node's own bound HTTP address (a wildcard bind
    checked on loopback); while nothing answers there the ping net falls silent."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock

    from stretchfs.pingnet.selfcheck import (
        SELF_CHECK_FAILURES,
        SELF_CHECK_INTERVAL_SECONDS,
        SELF_CHECK_TIMEOUT_SECONDS,
    )
    from stretchfs.web.listen import ListeningService

    class Reactor(MemoryReactorClock):
        def listenUDP(self, port: int, protocol: object, interface: str = "") -> object:
            return SimReactor(SimNetwork(self), self).listenUDP(port, protocol, interface)

    config = parse_config("store", minimal_config("store", name="store1"), "x.toml", {})
    reactor = Reactor()
    top = MultiService()
    listener = ListeningService(reactor, "tcp:0", None, "store")
    listener.setServiceParent(top)
    net, _registration = _wire(top, config, reactor=reactor, master=FakeMaster(), udp=True)
    assert net is not None
    top.startService()
    listener.address = IPv4Address("TCP", "0.0.0.0", 8123)  # bound, but never answers
    for _ in range(SELF_CHECK_FAILURES - 1):
        reactor.advance(SELF_CHECK_INTERVAL_SECONDS)
        reactor.advance(SELF_CHECK_TIMEOUT_SECONDS)
    assert net.http_ok
    assert {(host, port) for host, port, *_ in reactor.tcpClients} == {("127.0.0.1", 8123)}
    reactor.advance(SELF_CHECK_INTERVAL_SECONDS)
    reactor.advance(SELF_CHECK_TIMEOUT_SECONDS)
    assert not net.http_ok
    top.stopService()


def _registered_url(clock, listen: str, public_url: str = "") -> str:
    """The URL a prism whose first listener is `listen` registers with the master."""
    from twisted.internet.address import IPv4Address

    from stretchfs.web.listen import ListeningService

    text = minimal_config("prism", name="prism1", extra="\n[ping]\nenabled = false\n")
    text = text.replace("[http]\n", '[http]\npublic_url = "{}"\n'.format(public_url))
    config = parse_config("prism", text, "x.toml", {})
    top = MultiService()
    ListeningService(clock, listen, None, "prism").setServiceParent(top)
    ListeningService(clock, "tcp:8080", None, "prism").setServiceParent(top)
    master = FakeMaster()
    _net, registration = _wire(top, config, reactor=clock, master=master, udp=False)
    list(top)[0].address = IPv4Address("TCP", "127.0.0.1", 8443)
    registration.startService()
    clock.advance(1.0)
    registration.stopService()
    return master.registered[0]["url"]


def test_registered_url_has_the_scheme_of_the_first_listener(clock) -> None:
    """A node whose first listener is ssl: registers https://, a tcp: one http://."""
    assert _registered_url(clock, "ssl:8443:privateKey=k.pem") == "https://127.0.0.1:8443"
    assert _registered_url(clock, "tcp:8443") == "http://127.0.0.1:8443"


def test_public_url_overrides_the_registered_url(clock) -> None:
    """`[http] public_url` (NAT, load balancer) is registered as it is."""
    assert _registered_url(clock, "ssl:8443:privateKey=k.pem", "https://cdn1.example.com") == \
        "https://cdn1.example.com"
