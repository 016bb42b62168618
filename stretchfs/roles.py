"""Pieces every role's service is assembled from."""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.server import Site

from stretchfs.web.listen import ListeningService


class CallOnStop(Service):
    """Runs `on_stop()` when the service stops (closing pools and clients)."""

    def __init__(self, on_stop: Callable[[], Any]) -> None:
        self._on_stop = on_stop

    def stopService(self) -> Deferred[Any]:
        """Run the callback; fires once it is done."""
        super().stopService()
        return maybeDeferred(self._on_stop)


class QuietSite(Site):
    """A Site without per-request access log lines (metrics count requests)."""

    def log(self, request: Any) -> None:
        """Write no access log line."""


def http_service(reactor: Any, listen: str, resource: Any, role: str,
                 request_factory: Any = None) -> ListeningService:
    """A listening service for `resource` on the endpoint string `listen`.

    `request_factory` replaces twisted.web's Request class (the store streams
    PUT bodies to disk with its own).
    """
    site = QuietSite(resource)
    if request_factory is not None:
        site.requestFactory = request_factory
    site.displayTracebacks = False
    site.noisy = False
    return ListeningService(reactor, listen, site, role)
