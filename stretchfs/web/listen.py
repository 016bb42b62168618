"""A Service that listens for HTTP on a Twisted endpoint string.

`ssl:` endpoints are served through `stretchfs.web.tls` (session resumption,
certificates checked for renewal every CERT_CHECK_SECONDS); every other
endpoint type goes to Twisted's `serverFromString`.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from stretchfs.exitcodes import EX_LISTEN
from stretchfs.web.tls import CERT_CHECK_SECONDS, ReloadingContext, TlsListen

log = Logger()


class ListeningService(Service):
    """Listens on `endpoint` with `site`; logs "{role} listening on {scheme}://{host}:{port}"."""

    def __init__(self, reactor: Any, endpoint: str, site: Site, role: str) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._site = site
        self._role = role
        self._port: IListeningPort | None = None
        self._cert_check: LoopingCall | None = None
        self._failed_to_listen = False
        self.address: Any = None  # an IPv4Address or IPv6Address: .host, .port
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
        d = self._listen()
        d.addCallbacks(self._listening, self._failed)
        if self._failed_to_listen and not getattr(self._reactor, "running", False):
            raise SystemExit(EX_LISTEN)

    def _listen(self) -> Deferred[IListeningPort]:
        if self.scheme == "http":
            return serverFromString(self._reactor, self._endpoint).listen(self._site)
        try:
            tls = TlsListen.parse(self._endpoint)
            context = ReloadingContext(tls)
        except Exception as exc:  # a bad description or certificate: cannot listen
            return fail(exc)
        self._cert_check = LoopingCall(context.reload_if_changed)
        self._cert_check.clock = self._reactor
        self._cert_check.start(CERT_CHECK_SECONDS, now=False)
        return SSL4ServerEndpoint(self._reactor, tls.port, context, tls.backlog,
                                  tls.interface).listen(self._site)

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        self.address = port.getHost()
        host = getattr(self.address, "host", getattr(self.address, "name", ""))
        port_number = getattr(self.address, "port", 0)
        log.info("{role} listening on {scheme}://{host}:{port}", role=self._role, host=host,
                 port=port_number, scheme=self.scheme, event="listening")
        self.ready.callback(self.address)

    def _failed(self, failure: Failure) -> None:
        self._failed_to_listen = True
        log.critical("{role} cannot listen on {endpoint}: {error}; exiting with {exit_code}",
                     role=self._role, endpoint=self._endpoint, error=str(failure.value),
                     exit_code=EX_LISTEN, event="listen_failed")
        self.ready.errback(failure)
        if getattr(self._reactor, "running", False):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop listening (and checking the certificate)."""
        super().stopService()
        check, self._cert_check = self._cert_check, None
        if check is not None and check.running:
            check.stop()
        if self._port is None:
            return succeed(None)
        port, self._port = self._port, None
        return maybeDeferred(port.stopListening)  # type: ignore[call-overload]  # Deferred | None
