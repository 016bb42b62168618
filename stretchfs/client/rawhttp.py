"""`Connection`: one plain-HTTP/1.1 keep-alive connection that sends file bodies with sendfile.

The client's plain-http uploads go through here instead of httpx: the
request line, headers and multipart preamble leave in one write, a file's
bytes go from the page cache to the socket with `os.sendfile` (no copy
through Python, no per-chunk Python work), then the closing boundary.  A
body small enough to be bytes is one write with its headers.

Every wait — connecting, each send, each read of the answer — is bounded by
`timeout` seconds without progress, so a peer that accepts and says nothing
(or stops reading) ends the call with `TransportFailure`.  An answer that
arrives while the body is still going out (a 401 or 413 sent early, then the
connection closed) is read and returned.  A connection the server closed
while idle is noticed before the next request and opened again.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

MAX_HEAD_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 4 * 1024 * 1024
SENDFILE_PIECE_BYTES = 8 * 1024 * 1024
MAX_INTERIM_ANSWERS = 10

Connect = Callable[[tuple[str, int], float], socket.socket]


class TransportFailure(Exception):
    """No usable answer: the connection failed, timed out, or the answer was not HTTP."""


class ShortFile(Exception):
    """A file span ended early: the file shrank while it was sent."""


@dataclass(frozen=True)
class FileSpan:
    """`count` bytes of the open file `fd` from `offset`, sent with sendfile;
    `sent(n)` is called with the bytes of the span sent so far."""

    fd: int
    offset: int
    count: int
    sent: Callable[[int], None] | None = None


@dataclass
class RawResponse:
    """A complete answer: status, headers (names lower-case) and body."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON (ValueError when it is not)."""
        return json.loads(self.content)


class Connection:
    """Requests to `host:port` over one reused socket (see the module doc)."""

    def __init__(self, host: str, port: int, timeout: float, *,
                 connect: Connect = socket.create_connection) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._connect = connect
        self._sock: socket.socket | None = None
        self._reader: Any = None

    def close(self) -> None:
        """Close the socket (the next request opens a new one)."""
        if self._sock is not None:
            self._reader.close()
            self._sock.close()
            self._sock, self._reader = None, None

    def request(self, method: str, target: str, headers: dict[str, str],
                body: Sequence[bytes | FileSpan] = ()) -> RawResponse:
        """Send one request (body: bytes and file spans, in order) and read its answer."""
        try:
            return self._exchange(method, target, headers, body)
        except OSError as exc:
            self.close()
            raise TransportFailure("{}:{}: {}".format(self.host, self.port,
                                                      exc.strerror or exc)) from None
        except BaseException:
            self.close()
            raise

    def _exchange(self, method: str, target: str, headers: dict[str, str],
                  body: Sequence[bytes | FileSpan]) -> RawResponse:
        sock = self._open()
        length = sum(len(p) if isinstance(p, bytes) else p.count for p in body)
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        lines = ["{} {} HTTP/1.1".format(method, target),
                 "Host: {}:{}".format(host, self.port)]
        lines += ["{}: {}".format(name, value) for name, value in headers.items()]
        lines.append("Content-Length: {}".format(length))
        pending = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            for piece in body:
                if isinstance(piece, bytes):
                    pending += piece
                    continue
                if pending:
                    sock.sendall(pending)
                    pending = b""
                self._send_file(sock, piece)
            if pending:
                sock.sendall(pending)
        except (BrokenPipeError, ConnectionResetError):
            # The server may have answered early and closed: that answer is the result.
            answer = self._read_answer(method)
            self.close()
            return answer
        answer = self._read_answer(method)
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    def _open(self) -> socket.socket:
        if self._sock is not None and self._dropped(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect((self.host, self.port), self.timeout)
            self._sock.settimeout(self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._reader = self._sock.makefile("rb")
        return self._sock

    @staticmethod
    def _dropped(sock: socket.socket) -> bool:
        """An idle keep-alive socket that is readable was closed (or misused) by the server."""
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

    def _send_file(self, sock: socket.socket, span: FileSpan) -> None:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        done = 0
        while done < span.count:
            try:
                sent = os.sendfile(sock.fileno(), span.fd, span.offset + done,
                                   min(span.count - done, SENDFILE_PIECE_BYTES))
            except BlockingIOError:
                if not poller.poll(self.timeout * 1000):
                    raise TimeoutError("no progress sending for {} s".format(
                        self.timeout)) from None
                continue
            if sent == 0:
                raise ShortFile("the file ended {} bytes before its declared size".format(
                    span.count - done))
            done += sent
            if span.sent is not None:
                span.sent(done)

    def _read_head(self) -> tuple[bytes, int, dict[str, str]]:
        """Status line's version, status, and headers of the next answer."""
        reader = self._reader
        status_line = reader.readline(MAX_HEAD_BYTES)
        if not status_line:
            raise TransportFailure("the server closed the connection without an answer")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise TransportFailure("not an HTTP answer: {!r}".format(status_line[:80]))
        headers: dict[str, str] = {}
        size = len(status_line)
        while True:
            line = reader.readline(MAX_HEAD_BYTES)
            size += len(line)
            if size > MAX_HEAD_BYTES or not line:
                raise TransportFailure("answer headers too long or cut")
            if line in (b"\r\n", b"\n"):
                return parts[0], int(parts[1]), headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()

    def _read_answer(self, method: str) -> RawResponse:
        reader = self._reader
        for _ in range(MAX_INTERIM_ANSWERS):
            version, status, headers = self._read_head()
            if not 100 <= status < 200:  # interim answers (100 Continue) are skipped
                break
        else:
            raise TransportFailure("too many interim answers")
        if version == b"HTTP/1.0":
            headers.setdefault("connection", "close")
        if method == "HEAD" or status in (204, 304):
            return RawResponse(status, headers)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return RawResponse(status, headers, self._read_chunked())
        if "content-length" in headers:
            length = _size(headers["content-length"], 10)
            if length > MAX_ANSWER_BYTES:
                raise TransportFailure("answer of {} bytes is too large".format(length))
            content = reader.read(length)
            if len(content) != length:
                raise TransportFailure("answer cut after {} bytes".format(len(content)))
            return RawResponse(status, headers, content)
        headers["connection"] = "close"
        content = reader.read(MAX_ANSWER_BYTES + 1)
        if len(content) > MAX_ANSWER_BYTES:
            raise TransportFailure("answer too large")
        return RawResponse(status, headers, content)

    def _read_chunked(self) -> bytes:
        reader = self._reader
        pieces: list[bytes] = []
        total = 0
        while True:
            line = reader.readline(1024)
            size = _size(line.split(b";", 1)[0].decode("latin-1"), 16)
            if size == 0:
                break
            total += size
            if total > MAX_ANSWER_BYTES:
                raise TransportFailure("answer too large")
            chunk = reader.read(size + 2)
            if len(chunk) != size + 2:
                raise TransportFailure("answer cut inside a chunk")
            pieces.append(chunk[:size])
        while True:  # trailers, then the blank line
            line = reader.readline(MAX_HEAD_BYTES)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(pieces)


_DIGITS = {10: re.compile(r"[0-9]{1,18}"), 16: re.compile(r"[0-9a-fA-F]{1,15}")}


def _size(text: str, base: int) -> int:
    """A length field (only digits in `base`); TransportFailure otherwise: a sign would
    make `read` go on to the end of the stream."""
    text = text.strip()
    if not _DIGITS[base].fullmatch(text):
        raise TransportFailure("bad length {!r}".format(text[:80]))
    return int(text, base)
