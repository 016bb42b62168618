"""A Service that listens for HTTP on a Twisted endpoint string.

`ssl:` endpoints are served through `stretchfs.web.tls` (session resumption,
certificates checked for renewal every CERT_CHECK_SECONDS); every other
endpoint type goes to Twisted's `serverFromString`.  With `reuse_port`
(prism workers, docs/prism.md) a `tcp:` or `ssl:` endpoint is bound with
SO_REUSEPORT, so several processes listen on one port and the kernel spreads
new connections over them.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.internet.tcp import Port
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.server import Site

from stretchfs.exitcodes import EX_LISTEN
from stretchfs.web.tls import CERT_CHECK_SECONDS, ReloadingContext, TlsListen

log = Logger()

_UNESCAPED_COLON = re.compile(r"(?<!\\):")


class ReusePort(Port):
    """A TCP port bound with SO_REUSEPORT (other processes of this user may bind it too)."""

    def createInternetSocket(self) -> socket.socket:
        """The listening socket, with SO_REUSEPORT set before it is bound."""
        sock = super().createInternetSocket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock


def tcp_address(endpoint: str) -> tuple[str, int, int]:
    """(interface, port, backlog) of a `tcp:` or `ssl:` endpoint; ValueError otherwise."""
    if endpoint.startswith("ssl:"):
        tls = TlsListen.parse(endpoint)
        return tls.interface, tls.port, tls.backlog
    fields = _UNESCAPED_COLON.split(endpoint)
    if fields[0] != "tcp" or len(fields) < 2:
        raise ValueError("expected a tcp: or ssl: endpoint, got {!r}".format(endpoint))
    values = {"port": fields[1], "interface": "", "backlog": "50"}
    for item in fields[2:]:
        key, _, value = item.partition("=")
        if key not in values or key == "port":
            raise ValueError("tcp: endpoint: unknown option {!r}".format(item))
        values[key] = value.replace("\\:", ":")
    if not values["port"].isdigit() or not values["backlog"].isdigit():
        raise ValueError("tcp: endpoint: expected numbers for port and backlog")
    return values["interface"], int(values["port"]), int(values["backlog"])


class ListeningService(Service):
    """Listens on `endpoint` with `site`; logs "{role} listening on {scheme}://{host}:{port}"."""

    def __init__(self, reactor: Any, endpoint: str, site: Site, role: str, *,
                 reuse_port: bool = False, port: int | None = None) -> None:
        """`reuse_port`: bind with SO_REUSEPORT; `port` (with it) replaces the
        endpoint's port number (a worker joining the first one's `tcp:0` port)."""
        self._reactor = reactor
        self._endpoint = endpoint
        self._reuse_port = reuse_port
        self._port_number = port
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
        if self.scheme == "http" and not self._reuse_port:
            return serverFromString(self._reactor, self._endpoint).listen(self._site)
        context: ReloadingContext | None = None
        try:
            if self.scheme == "https":
                context = ReloadingContext(TlsListen.parse(self._endpoint))
            if self._reuse_port:
                return succeed(self._listen_reusing(context))
        except Exception as exc:  # a bad description, certificate or bind: cannot listen
            return fail(exc)
        assert context is not None
        tls = context.listen
        self._check_certificate(context)
        return SSL4ServerEndpoint(self._reactor, tls.port, context, tls.backlog,
                                  tls.interface).listen(self._site)

    def _listen_reusing(self, context: ReloadingContext | None) -> IListeningPort:
        """Bind with SO_REUSEPORT now (raises when the bind fails)."""
        interface, number, backlog = tcp_address(self._endpoint)
        if self._port_number is not None:
            number = self._port_number
        factory: Any = self._site
        if context is not None:
            factory = TLSMemoryBIOFactory(context, False, self._site)
        port = ReusePort(number, factory, backlog, interface, self._reactor)
        port.startListening()
        if context is not None:
            self._check_certificate(context)
        return port

    def _check_certificate(self, context: ReloadingContext) -> None:
        self._cert_check = LoopingCall(context.reload_if_changed)
        self._cert_check.clock = self._reactor
        self._cert_check.start(CERT_CHECK_SECONDS, now=False)

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
