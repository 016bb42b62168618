"""A small real HTTP/1.1 server on 127.0.0.1, in a thread, for the client's raw-socket path."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Callable

WAIT_SECONDS = 10.0


@dataclass
class Request:
    """One request as the server read it (body bytes exactly as they came)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = Callable[[Request], bytes]


def answer(status: int, body: bytes = b"{}", *, chunked: bool = False,
           close: bool = False) -> bytes:
    """A whole HTTP answer: JSON body with Content-Length, or chunked in two pieces."""
    head = "HTTP/1.1 {} X\r\nContent-Type: application/json\r\n".format(status)
    if close:
        head += "Connection: close\r\n"
    if not chunked:
        return (head + "Content-Length: {}\r\n\r\n".format(len(body))).encode() + body
    half = len(body) // 2
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + pieces + b"0\r\n\r\n"


@dataclass
class LoopbackServer:
    """Serves `reply` on a free port; `mode` says how it behaves.

    `answer`: reads each request whole, sends `reply(request)`, keeps the
    connection unless the answer says close.  `early`: reads the head only,
    answers and closes.  `mute`: reads requests whole, never answers.
    `silent`: accepts and neither reads nor answers.  With `keep` false the
    server closes each connection after its answer without saying so (as an
    idle keep-alive connection is closed); `dropped` is set once it did.
    """

    reply: Reply = lambda request: answer(200)
    mode: str = "answer"
    keep: bool = True
    requests: list[Request] = field(default_factory=list)
    accepted: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self.dropped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close every socket (bounded wait for the thread)."""
        self._stop.set()
        self._thread.join(WAIT_SECONDS)
        for sock in self._held:
            sock.close()
        self._listener.close()

    def __enter__(self) -> "LoopbackServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)
            if self.mode != "silent":
                conn.settimeout(0.05)
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buffer = b""
        while not self._stop.is_set():
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                chunk = self._recv(conn)
                if chunk is None:
                    continue
                if not chunk:
                    return
                buffer += chunk
                continue
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            buffer = buffer[head_end + 4:]
            if self.mode == "early":
                conn.sendall(self.reply(Request(method, path, headers, b"")))
                conn.close()
                return
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length and not self._stop.is_set():
                chunk = self._recv(conn)
                if chunk == b"":
                    return
                buffer += chunk or b""
            request = Request(method, path, headers, buffer[:length])
            buffer = buffer[length:]
            self.requests.append(request)
            if self.mode == "mute":
                continue
            reply = self.reply(request)
            try:
                conn.sendall(reply)
            except OSError:   # the client hung up mid-answer (as after a bad length)
                return
            if not self.keep or b"Connection: close" in reply.split(b"\r\n\r\n", 1)[0]:
                conn.close()
                self.dropped.set()
                return

    @staticmethod
    def _recv(conn: socket.socket) -> bytes | None:
        """Some bytes, b"" when the peer closed, None when nothing came in 50 ms."""
        try:
            return conn.recv(1 << 20)
        except TimeoutError:
            return None
        except OSError:
            return b""
