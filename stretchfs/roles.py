"""Pieces every role's service is assembled from."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import Request
from twisted.web.resource import IResource
from twisted.web.server import Site

from stretchfs.config import RoleConfig
from stretchfs.health import Readiness
from stretchfs.web.limits import (
    HANDSHAKE_TIMEOUT_SECONDS,
    LINGER_SECONDS,
    LimitedRequest,
    limited_channel,
)
from stretchfs.web.listen import ListeningService


class CallOnStop(Service):
    """Runs `on_stop()` when the service stops (closing pools and clients)."""

    def __init__(self, on_stop: Callable[[], object]) -> None:
        self._on_stop = on_stop

    def stopService(self) -> Deferred[object]:
        """Run the callback; fires once it is done."""
        super().stopService()
        return maybeDeferred(self._on_stop)


class QuietSite(Site):
    """A Site without per-request access log lines (metrics count requests)."""

    max_body: int  # read by LimitedRequest

    def log(self, request: Request) -> None:
        """Write no access log line."""


def http_services(reactor: Any, listen: Sequence[str], resource: IResource, role: str, *,
                  max_body: int, request_factory: Callable[..., LimitedRequest] = LimitedRequest,
                  linger_seconds: float = LINGER_SECONDS,
                  handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS, reuse_port: bool = False,
                  ports: Sequence[int] | None = None) -> list[ListeningService]:
    """One listening service per endpoint string of `listen`, all serving `resource`.

    Bodies over `max_body` are never stored (answered 413 at once, see
    `LimitedRequest`); `request_factory`, a `LimitedRequest`, may stream some routes'
    bodies itself (store PUTs, prism uploads); an oversized request head is
    answered, then the connection closes after `linger_seconds`.  `reuse_port` and
    `ports` (one per endpoint) are the prism workers' (see `ListeningService`).
    """
    site = QuietSite(resource, reactor=reactor)
    site.protocol = limited_channel(linger_seconds, handshake_timeout)  # type: ignore[assignment]
    site.requestFactory = request_factory  # type: ignore[assignment]  # any callable will do
    site.max_body = max_body
    site.displayTracebacks = False
    site.noisy = False
    return [ListeningService(reactor, endpoint, site, role, reuse_port=reuse_port,
                             port=ports[index] if ports is not None else None)
            for index, endpoint in enumerate(listen)]


class NodeAPI:
    """The part of a master, prism or store API every route may read (the common
    routes of `web/common.py`, `cluster_key_required`)."""

    def __init__(self, config: RoleConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, clock: IReactorTime) -> None:
        self.node_name = config.node.name
        self.cluster_key = config.cluster.key
        self.readiness = readiness
        self.metrics_registry = metrics_registry
        self.clock = clock
        self.max_body = config.http.max_body
