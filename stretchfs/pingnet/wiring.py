"""The ping net, the master registration and the HTTP self-check of a prism or store.

`build_<role>_service` calls `build_ping_net` before its API (which gets the
net) and `attach_ping_net` once its listeners are built.  The ping net is not
built (net is None) when `[ping] enabled = false` or without UDP (`udp=False`:
unit tests on a MemoryReactor).  Registration registers the first HTTP
listener (read when it runs, so a `tcp:0` port is registered with its real
number and its scheme) unless `[http] public_url` is set.  With a ping net and
a listener, an `HttpSelfCheck` silences the net while the node's own `GET
/ping` over real TCP fails.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed

from stretchfs.config import PrismConfig, StoreConfig
from stretchfs.errors import NotReady
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.registration import Registration
from stretchfs.pingnet.selfcheck import HttpSelfCheck, http_ping
from stretchfs.pingnet.service import PingNet
from stretchfs.redisstore import RedisStore
from stretchfs.web.listen import ListeningService
from stretchfs.wire.http import make_http_client

_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def build_ping_net(config: PrismConfig | StoreConfig, *, reactor: Any, redis: RedisStore,
                   master: Any, peers: Peers, metrics_registry: CollectorRegistry, udp: bool,
                   listeners: Sequence[ListeningService]
                   ) -> tuple[PingNet | None, Registration]:
    """A `PingNet` (when enabled and `udp`) and the `Registration` of this node."""
    role = "store" if isinstance(config, StoreConfig) else "prism"
    net: PingNet | None = None

    def record() -> dict[str, Any]:
        # Called once the services run: `net` and `listeners` are complete by then.
        address = listeners[0].address if listeners else None
        port = getattr(address, "port", 0)
        if not port:
            raise NotReady("HTTP listener not bound yet")
        url = config.http.public_url or "{}://{}:{}".format(listeners[0].scheme,
                                                             config.node.host, port)
        return {"name": config.node.name, "role": role, "host": config.node.host,
                "port": port, "ping_port": net.bound_port if net is not None else 0,
                "site": config.node.site, "zone": config.node.zone, "url": url}

    registration = Registration(master, peers, clock=reactor, record=record,
                                refresh_seconds=config.ping.registry_refresh)
    if config.ping.enabled and udp:
        # A peer that registered after our last download pings us: fetch the registry.
        net = PingNet(config.ping, self_name=config.node.name, host=config.node.host,
                      cluster_key=config.cluster.key, peers=peers, redis=redis,
                      redis_prefix=config.redis.prefix, reactor=reactor,
                      metrics_registry=metrics_registry, rng=random.Random(),
                      on_unknown_sender=registration.refresh_soon)
    return net, registration


def attach_ping_net(top: MultiService, net: PingNet | None, registration: Registration,
                    listeners: Sequence[ListeningService], reactor: Any) -> None:
    """Add `net`, its self-check on `listeners` and `registration` as the last children."""
    if net is not None:
        net.setServiceParent(top)
        if listeners:
            # A plain listener if there is one: the check is of our HTTP stack, not of TLS.
            plain = [listener for listener in listeners if listener.scheme == "http"]
            _attach_self_check(top, net, (plain or list(listeners))[0], reactor)
    registration.setServiceParent(top)


def _attach_self_check(top: MultiService, net: PingNet, listener: ListeningService,
                       reactor: Any) -> None:
    """Silence `net` while `listener` does not answer its own `GET /ping`."""
    # Our own certificate need not name a loopback address: not verified here.
    client = make_http_client(reactor, persistent=False, verify=False)

    def probe() -> Deferred[Any]:
        address = listener.address
        if address is None:  # not bound yet: the listener's own failure ends the process
            return succeed(None)
        host = _WILDCARD_TO_LOOPBACK.get(address.host, address.host)
        host = "[{}]".format(host) if ":" in host else host
        return http_ping(client, "{}://{}:{}/ping".format(listener.scheme, host, address.port),
                         reactor)

    HttpSelfCheck(reactor, probe, net.set_http_ok).setServiceParent(top)
