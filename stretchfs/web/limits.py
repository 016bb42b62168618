"""A Request that refuses oversized bodies without reading them into storage.

twisted.web's `Request` stores a whole body (to a temp file past 100 KB)
before any handler, auth check or size check runs, so an unauthenticated
client could fill the disk with one request, and a refused upload would
still cost its whole transfer.  `LimitedRequest` refuses a body whose
declared length passes the site's `max_body` as soon as the headers are in,
and a body without a declared length (chunked) once it grows past it.
Streaming subclasses (store PUTs, prism uploads) refuse the same way
through `refuse_now`.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.web.http import RESPONSES
from twisted.web.server import Request

from stretchfs.errors import PayloadTooLarge, StretchFSError
from stretchfs.web.errormap import status_for
from stretchfs.web.jsonio import encode_json

# How long a refused request's remaining body is still read (and dropped)
# before the connection closes: a client that sends its whole body before
# reading sees the answer instead of a connection reset (nginx's
# "lingering close").
LINGER_SECONDS = 10.0


class LimitedRequest(Request):
    """Keeps at most `channel.site.max_body` bytes of a request body."""

    refused = False
    body_received = False
    _body_limit: int | None = None
    _body_seen = 0
    _timer: Any = None  # linger, then abort, of a refused request

    def gotLength(self, length: int | None) -> None:
        """Refuse at once a declared length over the limit; otherwise buffer as usual."""
        site = getattr(self.channel, "site", None)
        self._body_limit = getattr(site, "max_body", None)
        self._body_seen = 0
        if self._body_limit is not None and length is not None and length > self._body_limit:
            self._refuse_too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Store a chunk unless the request was refused or the body passed the limit."""
        if self.refused:
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
        dropped until the body ends or `LINGER_SECONDS` pass; then the
        connection closes (aborted if the client does not take the answer
        within another `LINGER_SECONDS`).  The route handler never runs.
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
        body = encode_json({"error": str(error) or error.__class__.__name__})
        extra = 'WWW-Authenticate: Bearer realm="stretchfs"\r\n' if code == 401 else ""
        head = ("HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=utf-8\r\n"
                "Content-Length: {}\r\n{}Connection: close\r\n\r\n").format(
            code, RESPONSES.get(code, b"Error").decode("ascii"), len(body), extra)
        channel.transport.write(head.encode("ascii") + body)
        self._timer = channel.callLater(LINGER_SECONDS, self._close_refused)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole body is in: close a refused request, else process it as usual."""
        self.body_received = True
        if self.refused:
            self._close_refused()
            return
        super().requestReceived(command, path, version)

    def _close_refused(self) -> None:
        self._cancel_timer()
        channel = self.channel
        if channel is None:
            return
        # The channel's own loseConnection also unregisters it as the
        # transport's producer, or a paused channel could keep it open.
        channel.loseConnection()
        self._timer = channel.callLater(LINGER_SECONDS, channel.transport.abortConnection)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Any) -> None:
        """Forget the timer of a refused request."""
        self._cancel_timer()
        super().connectionLost(reason)
