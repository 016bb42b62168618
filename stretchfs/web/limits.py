"""A Request that refuses oversized bodies without reading them into storage,
and a channel that answers oversized request heads instead of dropping them.

twisted.web's `Request` stores a whole body (to a temp file past 100 KB)
before any handler, auth check or size check runs, so an unauthenticated
client could fill the disk with one request, and a refused upload would
still cost its whole transfer.  `LimitedRequest` refuses a body whose
declared length passes the site's `max_body` as soon as the headers are in,
and a body without a declared length (chunked) once it grows past it.

Bodies a role streams (store PUTs, prism uploads) bypass that buffer: the
request class made by `limited_request(opener)` asks `opener(request, length)`,
as soon as the headers are in, for an `Intake` that takes each chunk as it
arrives; an opener or intake raising a StretchFSError refuses the request at
once (`refuse_now`).  The handler gets the intake with `intake_of`.

twisted.web's `HTTPChannel` drops the connection without a word when the
request line or a header line passes `MAX_LENGTH` (16 KiB), and answers a
bare 400 when all header lines together pass `totalHeadersSize`.
`LimitedChannel` answers 414 URI Too Long (request line) or 431 Request
Header Fields Too Large (headers) with a JSON body, then closes the same
lingering way.

A TLS client on a plain listener sends a ClientHello, which has no line end
for `HTTPChannel` to wait for: `LimitedChannel` answers its first byte (a TLS
handshake record, 0x16) with a 400 and closes at once, so the client fails
fast ("wrong version number") instead of after the 60 s request timeout.  On
a TLS listener a client that does not finish its handshake within
`handshake_timeout` (default `HANDSHAKE_TIMEOUT_SECONDS`; a truncated
ClientHello) is dropped; garbage and plain HTTP there are refused by OpenSSL
at once.
"""

from __future__ import annotations

import io
from typing import Any, Callable, TypeVar, cast

from twisted.internet.interfaces import IHandshakeListener, ITCPTransport, ITransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request
from zope.interface import implementer

from stretchfs.errors import InvalidInput, PayloadTooLarge, StretchFSError
from stretchfs.web.errormap import status_for
from stretchfs.web.intake import Intake
from stretchfs.web.jsonio import encode_json

# The default of how long a refused request's remaining body is still read
# (and dropped) before the connection closes: a client that sends its whole
# body before reading sees the answer instead of a connection reset (nginx's
# "lingering close").
LINGER_SECONDS = 10.0
# How long a client on a TLS listener may take to complete its handshake.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# The first byte of a TLS handshake record (a ClientHello).
_TLS_HANDSHAKE_BYTE = b"\x16"
# Reason phrases twisted.web lacks or words the old way (RFC 9110, RFC 6585).
_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}

T = TypeVar("T")
IntakeOpener = Callable[["LimitedRequest", "int | None"], "Intake | None"]


class LimitedRequest(Request):
    """Keeps at most `channel.site.max_body` bytes of a request body, or streams it
    into the `Intake` its opener gives (see `limited_request`)."""

    opener: IntakeOpener | None = None
    linger_seconds = LINGER_SECONDS
    refused = False
    body_received = False
    _intake: Intake | None = None
    _body_limit: int | None = None
    _body_seen = 0
    _timer: Any = None  # linger, then abort, of a refused request

    def head(self) -> tuple[bytes, bytes]:
        """The method (upper case) and path (query dropped) of the request line.

        twisted.web sets `method` and `path` only once the whole body is in
        (`requestReceived`); until then its `HTTPChannel` keeps them in
        `_command` and `_path`.  This is the one place that reads them.
        """
        command = getattr(self.channel, "_command", None) or b""
        path = getattr(self.channel, "_path", None) or b""
        return command.upper(), path.split(b"?", 1)[0]

    def gotLength(self, length: int | None) -> None:
        """Open the body's intake, or refuse at once a declared length over the limit,
        or buffer as usual."""
        if self.opener is not None:
            self.content = io.BytesIO()  # what twisted.web reads once the body is in
            try:
                self._intake = self.opener(self, length)
            except StretchFSError as exc:
                self.refuse_now(exc)
                return
            if self._intake is not None:
                return
        site = getattr(self.channel, "site", None)
        self._body_limit = getattr(site, "max_body", None)
        self._body_seen = 0
        if self._body_limit is not None and length is not None and length > self._body_limit:
            self._refuse_too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Stream a chunk into the intake, or store it unless the request was refused
        or the body passed the limit."""
        if self.refused:
            return
        intake = self._intake
        if intake is not None:
            try:
                intake.write(data)
            except StretchFSError as exc:
                self._intake = None
                intake.abandon()
                self.refuse_now(exc)
            return
        self._body_seen += len(data)
        if self._body_limit is not None and self._body_seen > self._body_limit:
            self._refuse_too_large()
            return
        super().handleContentChunk(data)

    def _refuse_too_large(self) -> None:
        self.refuse_now(PayloadTooLarge(
            "request body larger than {} bytes".format(self._body_limit)))

    def refuse_now(self, error: StretchFSError) -> None:
        """Answer `error` at once, before the rest of the body, and close.

        No `100 Continue` is sent.  What the client still sends is read and
        dropped until the body ends or `linger_seconds` pass; then the
        connection closes (aborted if the client does not take the answer
        within another `linger_seconds`).  The route handler never runs.
        """
        channel = self.channel
        if self.refused or channel is None or self._disconnected:
            return
        self.refused = True
        self.requestHeaders.removeHeader(b"expect")
        previous: Any = self.content
        self.content = io.BytesIO()
        if previous is not None:
            previous.close()
        code = status_for(error) or 500
        _transport_of(channel).write(_closing_answer(code, str(error) or error.__class__.__name__))
        self._timer = channel.callLater(self.linger_seconds, self._close_refused)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole body is in: close a refused request, else process it as usual."""
        self.body_received = True
        if self.refused:
            self._close_refused()
            return
        super().requestReceived(command, path, version)

    def _close_refused(self) -> None:
        self._cancel_timer()
        if self.channel is not None:
            self._timer = _close_lingering(self.channel, self.linger_seconds)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Any) -> None:
        """Forget the timer of a refused request; abandon an incomplete body's intake."""
        self._cancel_timer()
        intake, self._intake = self._intake, None
        if intake is not None and not self.body_received:
            intake.abandon()
        super().connectionLost(reason)


def limited_request(opener: IntakeOpener | None = None, *,
                    linger_seconds: float = LINGER_SECONDS) -> type[LimitedRequest]:
    """A Site `requestFactory`: `LimitedRequest`s streaming the bodies `opener` takes."""
    return type("BoundLimitedRequest", (LimitedRequest,), {
        "opener": staticmethod(opener) if opener is not None else None,
        "linger_seconds": linger_seconds})


def intake_of(request: Any, kind: type[T]) -> T:
    """The `kind` intake that took `request`'s body; InvalidInput when it had none."""
    intake = getattr(request, "_intake", None) if isinstance(request, LimitedRequest) else None
    if not isinstance(intake, kind):
        raise InvalidInput("the request body was not received")
    return intake


@implementer(IHandshakeListener)
class LimitedChannel(HTTPChannel):
    """An HTTPChannel that answers 414/431 to an oversized request head, then closes;
    a TLS handshake on a plain listener gets a 400, a stalled one on a TLS listener
    is dropped."""

    linger_seconds = LINGER_SECONDS
    handshake_timeout = HANDSHAKE_TIMEOUT_SECONDS
    _refused_timer: Any = None
    _handshake_timer: Any = None
    _first_data = True

    def connectionMade(self) -> None:
        """On a TLS listener, give the client `handshake_timeout` seconds to finish its
        handshake."""
        super().connectionMade()
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            self._handshake_timer = self.callLater(self.handshake_timeout,
                                                   self.transport.abortConnection)

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done: the usual request timeouts apply from now on."""
        self._cancel_handshake_timer()

    def dataReceived(self, data: bytes) -> None:
        """Answer a TLS handshake on a plain listener with a 400; else parse as usual."""
        if self._first_data and data:
            self._first_data = False
            if data[:1] == _TLS_HANDSHAKE_BYTE and \
                    not isinstance(self.transport, TLSMemoryBIOProtocol):
                _transport_of(self).write(_closing_answer(
                    400, "TLS handshake on a plain HTTP port: use http:// here, or the "
                    "node's https:// listener"))
                self.setTimeout(None)
                _transport_of(self).loseConnection()
                return
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        """Refuse a head whose lines together pass `totalHeadersSize`; else parse as usual."""
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse_head()
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line passed `MAX_LENGTH`: the request line (414) or a header line (431)."""
        self._refuse_head()

    def _refuse_head(self) -> None:
        # Nothing of this request's head counted yet: the line is its request line.
        if self._receivedHeaderSize == 0:
            answer = _closing_answer(414, "request line (URL) larger than {} bytes".format(
                self.MAX_LENGTH))
        else:
            answer = _closing_answer(431, "request headers larger than {} bytes".format(
                self.totalHeadersSize))
        _transport_of(self).write(answer)
        # The rest of the head, and whatever the client still sends, is
        # dropped until the lingering close.
        self.clearLineBuffer()
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.setTimeout(None)
        self._refused_timer = self.callLater(self.linger_seconds, self._close_refused)

    def _close_refused(self) -> None:
        self._refused_timer = _close_lingering(self, self.linger_seconds)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the lingering-close and handshake timers."""
        if self._refused_timer is not None and self._refused_timer.active():
            self._refused_timer.cancel()
        self._refused_timer = None
        self._cancel_handshake_timer()
        super().connectionLost(reason)


def _closing_answer(code: int, message: str) -> bytes:
    """A complete `code` answer with a JSON error body and `Connection: close`."""
    body = encode_json({"error": message})
    extra = 'WWW-Authenticate: Bearer realm="stretchfs"\r\n' if code == 401 else ""
    head = ("HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=utf-8\r\n"
            "Content-Length: {}\r\n{}Connection: close\r\n\r\n").format(
        code, _REASONS.get(code) or RESPONSES.get(code, b"Error").decode("ascii"), len(body),
        extra)
    return head.encode("ascii") + body


def limited_channel(linger_seconds: float = LINGER_SECONDS,
                    handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS) -> type[LimitedChannel]:
    """A Site `protocol`: `LimitedChannel`s lingering `linger_seconds` after a refusal,
    and giving a TLS client `handshake_timeout` seconds to finish its handshake."""
    return type("BoundLimitedChannel", (LimitedChannel,),
                {"linger_seconds": linger_seconds, "handshake_timeout": handshake_timeout})


def _transport_of(channel: HTTPChannel) -> ITransport:
    """The channel's transport (set from connectionMade until the connection is lost)."""
    assert channel.transport is not None
    return channel.transport


def _close_lingering(channel: HTTPChannel, linger_seconds: float) -> Any:
    """Close `channel`; abort it if the client has not taken the answer within
    `linger_seconds`.  Returns the abort timer."""
    # The channel's own loseConnection also unregisters it as the
    # transport's producer, or a paused channel could keep it open.
    channel.loseConnection()
    return channel.callLater(linger_seconds, cast(ITCPTransport, channel.transport).abortConnection)
