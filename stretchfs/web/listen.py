"""A Service that listens for HTTP on a Twisted endpoint string."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.server import Site

from stretchfs.exitcodes import EX_LISTEN

log = Logger()


class ListeningService(Service):
    """Listens on `endpoint` with `site`; logs "{role} listening on {scheme}://{host}:{port}"."""

    def __init__(self, reactor: Any, endpoint: str, site: Site, role: str) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._site = site
        self._role = role
        self._port: Any = None
        self._failed_to_listen = False
        self.address: Any = None
        self.ready: Deferred[Any] = Deferred()

    @property
    def scheme(self) -> str:
        """"https" for a TLS (`ssl:`) endpoint, else "http"."""
        return "https" if self._endpoint.startswith("ssl:") else "http"

    def startService(self) -> None:
        """Start listening; a failure to bind ends the process with EX_LISTEN.

        Under `twistd` this runs before the reactor does and a TCP bind fails
        at once: SystemExit then leaves twistd before anything else starts (a
        node that cannot serve HTTP must not run half alive, its ping net
        answering).  With the reactor already running the reactor is stopped.
        """
        super().startService()
        d = serverFromString(self._reactor, self._endpoint).listen(self._site)
        d.addCallbacks(self._listening, self._failed)
        if self._failed_to_listen and not getattr(self._reactor, "running", False):
            raise SystemExit(EX_LISTEN)

    def _listening(self, port: Any) -> None:
        self._port = port
        self.address = port.getHost()
        host = getattr(self.address, "host", getattr(self.address, "name", ""))
        port_number = getattr(self.address, "port", 0)
        log.info("{role} listening on {scheme}://{host}:{port}", role=self._role, host=host,
                 port=port_number, scheme=self.scheme, event="listening")
        self.ready.callback(self.address)

    def _failed(self, failure: Any) -> None:
        self._failed_to_listen = True
        log.critical("{role} cannot listen on {endpoint}: {error}; exiting with {exit_code}",
                     role=self._role, endpoint=self._endpoint, error=str(failure.value),
                     exit_code=EX_LISTEN, event="listen_failed")
        self.ready.errback(failure)
        if getattr(self._reactor, "running", False):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop listening."""
        super().stopService()
        if self._port is None:
            return succeed(None)
        port, self._port = self._port, None
        return maybeDeferred(port.stopListening)
