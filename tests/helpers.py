"""Helpers for tests: a real Redis, configs, and in-memory HTTP."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from stretchfs.devcluster.redis_server import RedisProcess, redis_command
from stretchfs.redisstore import RedisAddress

CLUSTER_KEY = "test-cluster-key-0123456789abcdefghij"


@dataclass
class RedisServer:
    """A running redis-server used by a test session."""

    process: RedisProcess

    @property
    def port(self) -> int:
        """Its TCP port on 127.0.0.1."""
        return self.process.port

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return self.process.url

    def command(self, *args: str) -> bytes:
        """Send one command with a one-line reply (as the admin) and return that line."""
        return redis_command(RedisAddress(port=self.port), *args)

    def login_url(self, user: str, prefix: str) -> str:
        """URL (password included) of ACL user `user` for keys under `prefix`, set up
        afresh from stretchfs.devcluster.redisacl (the rules etc/redis.conf documents)."""
        from stretchfs.devcluster.redisacl import acl_rules

        password = "pw-" + user
        assert self.command("ACL", "SETUSER", user, *acl_rules(user, prefix, ">" + password)
                            ).startswith(b"+OK")
        return "redis://{}:{}@127.0.0.1:{}/0".format(user, password, self.port)

    def flush(self) -> None:
        """Empty every database."""
        assert self.command("FLUSHALL").startswith(b"+OK")

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


def start_redis_server(folder: str) -> RedisServer:
    """Start a throw-away redis-server (no persistence) on a free port."""
    process = RedisProcess(folder, appendonly=False)
    process.start()
    return RedisServer(process)


def write_config(folder: str, role: str, text: str) -> str:
    """Write `text` as `<folder>/<role>.toml` and return its path."""
    path = os.path.join(folder, role + ".toml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def minimal_config(role: str, *, redis_url: str = "redis://127.0.0.1:1/0",
                   root: str = "/tmp/stretchfs-test-root", name: str = "",
                   master_url: str = "http://127.0.0.1:1", extra: str = "") -> str:
    """A valid TOML config for `role` listening on a free port of 127.0.0.1."""
    lines = [
        "[node]", 'name = "{}"'.format(name or role + "1"), "",
        "[http]", 'listen = "tcp:0:interface=127.0.0.1"', "",
        "[cluster]", 'key = "{}"'.format(CLUSTER_KEY), 'master_url = "{}"'.format(master_url), "",
        "[redis]", 'url = "{}"'.format(redis_url), "",
    ]
    if role == "store":
        lines += ["[store]", 'root = "{}"'.format(root), 'min_free = 0', ""]
    return "\n".join(lines) + extra


def json_body(data: bytes) -> Any:
    """Decode a JSON response body."""
    return json.loads(data.decode("utf-8"))


def result_of(d: Any) -> Any:
    """The result of an already-fired Deferred (raises its failure)."""
    from twisted.python.failure import Failure

    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def load_test_config(role: str, **kwargs: Any) -> Any:
    """A validated config object for `role` built from `minimal_config`."""
    from stretchfs.config import parse_config

    return parse_config(role, minimal_config(role, **kwargs), "test.toml", {})


def call(api: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    """Send one in-memory request to a Klein API object: (status, headers, body)."""
    from treq.testing import StubTreq

    stub = StubTreq(api.app.resource())
    response = result_of(stub.request(method, "http://node" + path, **kwargs))
    return response.code, response.headers, result_of(stub.content(response))


@dataclass
class RawExchange:
    """What a raw-socket HTTP client saw (see `raw_http`)."""

    reply: bytes
    sent: int
    closed: bool


def raw_http(port: int, head: bytes, body: bytes = b"", *, chunk: int = 65536,
             read_timeout: float = 5.0) -> RawExchange:
    """Send `head`, then `body` in chunks while watching for an early reply; read the reply.

    Blocking: call it in a thread from reactor-based tests.  Stops sending as
    soon as a reply arrives (or the server resets); `closed` says whether the
    server closed the connection within `read_timeout` after that.
    """
    import select

    reply = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head)
        try:
            while sent < len(body):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sent += sock.send(body[sent:sent + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed = False
        try:
            for _ in range(10_000):
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                reply += data
        except (socket.timeout, ConnectionResetError):
            pass
    return RawExchange(reply, sent, closed)


class SilentPeer:
    """The far end of one HTTP client connection on a `MemoryReactorClock`.

    `accept()` completes the client's pending connection with an in-memory
    transport that says nothing; a peer with `buffer_bytes` stops taking the
    client's writes past that many bytes (the full socket buffer of a frozen
    peer: the client's body producer is paused and never resumed).
    `answer(data)` sends raw response bytes.
    """

    def __init__(self, reactor: Any, buffer_bytes: int | None = None) -> None:
        from twisted.internet.testing import StringTransport

        class _Transport(StringTransport):
            def write(self, data: bytes) -> None:
                super().write(data)
                if buffer_bytes is not None and len(self.value()) >= buffer_bytes \
                        and self.producer is not None:
                    self.producer.pauseProducing()

            def stopProducing(self) -> None:
                self.loseConnection()  # as a TCP transport does

        self._reactor = reactor
        self.transport = _Transport()
        self.protocol: Any = None

    def accept(self) -> SilentPeer:
        """Accept the oldest pending client connection."""
        _host, _port, factory, _timeout, _bind = self._reactor.tcpClients.pop(0)
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        return self

    def answer(self, data: bytes) -> None:
        """Send `data` to the client."""
        self.protocol.dataReceived(data)

    @property
    def dropped(self) -> bool:
        """The client closed or aborted the connection."""
        return bool(self.transport.disconnecting or self.transport.disconnected)
