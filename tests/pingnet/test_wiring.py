"""attach_ping_net: a prism or store gets a PingNet and a Registration that stop cleanly."""

from __future__ import annotations

from twisted.application.service import MultiService

from stretchfs.config import parse_config
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.wiring import attach_ping_net
from tests.fakes import FakeRedisStore
from tests.helpers import minimal_config
from tests.pingnet.simnet import SimNetwork, SimReactor
from tests.pingnet.test_registration import FakeMaster


def test_store_gets_ping_net_and_registration_that_stop_cleanly(clock) -> None:
    """Both services start with the role, and no timer is left after stopService."""
    config = parse_config("store", minimal_config("store", name="store1"), "x.toml", {})
    reactor = SimReactor(SimNetwork(clock), clock)
    top = MultiService()
    master = FakeMaster()
    net, registration = attach_ping_net(top, config, reactor=reactor,
                                        redis=FakeRedisStore(clock), master=master,
                                        peers=Peers(self_name="store1"))
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
    net, registration = attach_ping_net(top, config, reactor=clock,
                                        redis=FakeRedisStore(clock), master=FakeMaster(),
                                        peers=Peers(self_name="prism1"))
    assert net is None and list(top) == [registration]
