"""Outgoing HTTP between roles: one treq client per process, typed errors, deadlines.

Every role's client class (`MasterClient`, `StoreClient`, ...) wraps a
`JsonClient`: it sets the cluster key, gives every request a `Deadline`,
turns connection failures into `PeerUnavailable` and non-2xx answers into
`UpstreamError`, and caps the size of the bodies it reads.

https:// peers are verified against `[tls] ca_file` (a PEM bundle) or the
system CA store.  A failed TLS handshake is `TlsRejected` (a
`PeerUnavailable`) naming the peer and OpenSSL's reason, and is logged once
per peer until a handshake with that peer succeeds again.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Callable, TypeVar

from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.internet.error import ConnectionRefusedError as ConnectionRefused
from twisted.internet.error import TimeoutError as NetTimeout
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    PotentialDataLoss,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from stretchfs.errors import PeerRefused, PeerUnavailable, TlsRejected, UpstreamError
from stretchfs.web.jsonio import decode_json, encode_json

log = Logger()

R = TypeVar("R", bound=IResponse)

MAX_REPLY_BYTES = 16 * 1024 * 1024
_CONNECTION_ERRORS = (ConnectError, ConnectionLost, NetTimeout, CancelledError,
                      ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed,
                      ConnectionRefusedError, OSError)


def make_http_client(reactor: Any, persistent: bool = True, max_per_host: int = 16,
                     ca_file: str = "", verify: bool = True) -> HTTPClient:
    """A treq client with a (persistent) connection pool on `reactor`; https://
    peers must present a certificate from `ca_file` (PEM bundle; '' = system store).

    `verify=False` is only for a node's HTTP self-check of its own listener.
    """
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = 60
    if not verify:
        policy: IPolicyForHTTPS = _OwnListenerPolicy()
    else:
        policy = BrowserLikePolicyForHTTPS(
            trustRootFromCertificates(load_ca_bundle(ca_file)) if ca_file else platformTrust())
    return HTTPClient(TlsReportingAgent(Agent(reactor, contextFactory=policy, pool=pool)))


@implementer(IPolicyForHTTPS, IOpenSSLClientConnectionCreator)
class _OwnListenerPolicy:
    """TLS without certificate checks, for a node's probe of its own listener."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> _OwnListenerPolicy:
        return self

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(CertificateOptions().getContext(), None)
        connection.set_connect_state()
        return connection


def load_ca_bundle(path: str) -> list[Certificate]:
    """The certificates of the PEM bundle at `path`; ValueError when it holds none."""
    with open(path, "rb") as handle:
        text = handle.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in text.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError("{}: no PEM certificate in it".format(path))
    return [Certificate.loadPEM(block) for block in blocks]


def tls_failure_reason(error: BaseException | None) -> str | None:
    """OpenSSL's (or the name check's) reason when `error` is a failed TLS handshake."""
    reasons = getattr(error, "reasons", None) or []
    for item in [error] + [getattr(r, "value", r) for r in reasons]:
        if isinstance(item, SSL.Error):
            parts = [entry[-1] for entry in (item.args[0] if item.args else [])
                     if isinstance(entry, tuple) and entry[-1]]
            return ", ".join(parts) or "handshake failed"
        if item.__class__.__name__ == "VerificationError":  # service_identity: wrong name
            return "certificate does not match the host name: {}".format(item)
    return None


@implementer(IAgent)
class TlsReportingAgent:
    """An Agent that logs a failed TLS handshake once per peer (and its recovery)."""

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent
        self._failing: set[bytes] = set()

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        """Send the request through the wrapped agent, noting TLS outcomes per peer."""
        d = self._agent.request(method, uri, headers, bodyProducer)
        if uri.startswith(b"https://"):
            peer = uri.split(b"/", 3)[2]
            d.addCallbacks(lambda response: self._worked(peer, response),
                           lambda failure: self._failed(peer, failure))
        return d

    def _worked(self, peer: bytes, response: IResponse) -> IResponse:
        if peer in self._failing:
            self._failing.discard(peer)
            log.info("TLS to {peer} works again", peer=peer.decode("ascii", "replace"))
        return response

    def _failed(self, peer: bytes, failure: Failure) -> Failure:
        reason = tls_failure_reason(failure.value)
        if reason is not None and peer not in self._failing:
            self._failing.add(peer)
            log.error("TLS to {peer} failed: {reason} (check [tls] ca_file and the peer's "
                      "certificate); further failures with this peer are not logged",
                      peer=peer.decode("ascii", "replace"), reason=reason,
                      event="tls_failed")
        return failure


class Deadline:
    """Gives up on one outgoing HTTP exchange after `timeout` seconds without progress.

    Progress is a chunk of our streamed request body sent (`touch`) or of the
    answer's body read.  On expiry the exchange is dropped whatever phase it
    is in: while connecting, sending or waiting for the answer's headers the
    request Deferred is cancelled (Twisted forwards that into the Deferreds
    it has chained on, down to the connection, which it aborts), and while
    the body is read its connection is stopped.  The awaiting caller then
    gets `PeerUnavailable` at once.  Use it as a context manager: the timer
    runs from `with` to the end of the block.
    """

    def __init__(self, clock: IReactorTime, timeout: float, peer: str) -> None:
        self._clock = clock
        self.timeout = timeout
        self._peer = peer
        self._last = 0.0
        self._call: IDelayedCall | None = None
        self._abort: Callable[[], None] | None = None
        self.expired = False

    def __enter__(self) -> Deadline:
        self._last = self._clock.seconds()
        self._call = self._clock.callLater(self.timeout, self._check)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._abort = None

    def touch(self) -> None:
        """The exchange made progress."""
        self._last = self._clock.seconds()

    def _check(self) -> None:
        idle = self._clock.seconds() - self._last
        if idle < self.timeout:
            self._call = self._clock.callLater(self.timeout - idle, self._check)
            return
        self._call = None
        self.expired = True
        log.warn("{peer} made no progress for {idle:.1f}s, giving up", peer=self._peer,
                 idle=idle)
        if self._abort is not None:
            self._abort()

    def on_expiry(self, abort: Callable[[], None] | None) -> None:
        """Call `abort` (instead of what was set before) when the deadline passes."""
        self._abort = abort

    def error(self, what: str) -> PeerUnavailable:
        """The PeerUnavailable of an exchange that expired while doing `what`."""
        return PeerUnavailable("{} stalled {}: no progress for {}s".format(
            self._peer, what, self.timeout))

    async def response(self, request: Deferred[R]) -> R:
        """The answer of `request` (its headers); PeerUnavailable when unreachable or
        stalled.  Cancelling the caller still raises CancelledError."""
        self.on_expiry(request.cancel)
        try:
            return await request
        except Exception as exc:
            if self.expired:
                raise self.error("before answering") from None
            if isinstance(exc, CancelledError) or not isinstance(exc, _CONNECTION_ERRORS):
                raise
            reason = tls_failure_reason(exc)
            if reason is not None:
                raise TlsRejected("{} TLS handshake failed: {}".format(
                    self._peer, reason)) from None
            refused = isinstance(exc, (ConnectionRefusedError, ConnectionRefused))
            raise (PeerRefused if refused else PeerUnavailable)("{} unreachable: {}".format(
                self._peer, exc.__class__.__name__)) from None
        finally:
            self.on_expiry(None)

    def collect(self, response: IResponse, on_chunk: Callable[[bytes], None]) -> Deferred[None]:
        """Feed the body of `response` to `on_chunk`; fires when it ended.

        Fails with PeerUnavailable when the body is cut short or stalls, or
        with what `on_chunk` raised (the connection is then dropped).
        """
        reader = _BodyReader(self, on_chunk)
        response.deliverBody(reader)
        reader.done.addBoth(self._read_done)
        return reader.done

    def _read_done(self, result: object) -> object:
        self.on_expiry(None)
        return result

    async def read(self, response: IResponse, max_bytes: int = MAX_REPLY_BYTES) -> bytes:
        """The body of `response`, refusing to buffer more than `max_bytes`."""
        length = response.length
        if isinstance(length, int) and length > max_bytes:
            discard_body(response)
            raise UpstreamError(response.code, b"reply too large")
        chunks: list[bytes] = []
        seen = 0

        def keep(data: bytes) -> None:
            nonlocal seen
            seen += len(data)
            if seen > max_bytes:
                raise UpstreamError(response.code, b"reply too large")
            chunks.append(data)

        await self.collect(response, keep)
        return b"".join(chunks)


class _BodyReader(Protocol):
    """Reads one response body for a `Deadline`, dropping the connection on expiry."""

    def __init__(self, deadline: Deadline, on_chunk: Callable[[bytes], None]) -> None:
        self._deadline = deadline
        self._on_chunk = on_chunk
        self.done: Deferred[None] = Deferred(lambda _: self._drop())

    def connectionMade(self) -> None:
        self._deadline.on_expiry(lambda: self._fail(self._deadline.error("sending its answer")))

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._deadline.touch()
        try:
            self._on_chunk(data)
        except Exception:
            self._fail(Failure())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(PeerUnavailable("answer cut short: {}".format(
                reason.getErrorMessage())))

    def _fail(self, error: BaseException | Failure) -> None:
        if not self.done.called:
            self._drop()
            self.done.errback(error)

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]  # a body's producer


def discard_body(response: IResponse) -> None:
    """Drop a response body we refuse to read (the connection is closed)."""
    response.deliverBody(_Discard())


class _Discard:
    """A protocol that stops its transport at once."""

    def makeConnection(self, transport: IPushProducer) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class JsonClient:
    """JSON requests to one peer's base URL with the cluster key."""

    def __init__(self, http: HTTPClient, base_url: str, cluster_key: str,
                 timeout: float, clock: IReactorTime) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._headers: dict[bytes | str, list[bytes | str]] = {
            b"Authorization": [b"Bearer " + cluster_key.encode("utf-8")]}
        self.timeout = timeout
        self.clock = clock

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this peer."""
        return self.base_url + path

    def deadline(self, timeout: float | None = None) -> Deadline:
        """A Deadline for one exchange with this peer (`timeout` defaults to ours)."""
        return Deadline(self.clock, timeout or self.timeout, self.base_url)

    async def request(self, deadline: Deadline, method: str, path: str, body: Any = None,
                      params: dict[str, Any] | None = None, **kwargs: Any) -> IResponse:
        """Send a request under `deadline`; raise PeerUnavailable or UpstreamError."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = encode_json(body)
            headers[b"Content-Type"] = [b"application/json"]
        url = self.url(path)
        response = await deadline.response(self.http.request(
            method, url, data=data, params=params, headers=headers, **kwargs))
        if not 200 <= response.code < 300:
            raise UpstreamError(response.code, await deadline.read(response, 64 * 1024), url)
        return response

    async def json(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Send a request and decode its JSON answer."""
        with self.deadline(timeout) as deadline:
            response = await self.request(deadline, method, path, body, params)
            data = await deadline.read(response)
        try:
            return decode_json(data) if data else None
        except ValueError:
            raise UpstreamError(response.code, data[:200], self.url(path)) from None
