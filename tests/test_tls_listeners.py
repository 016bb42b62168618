"""Plain and TLS listeners side by side: wrong-protocol and broken clients end fast,
and outgoing https:// calls trust `[tls] ca_file` and say so when they cannot."""

from __future__ import annotations

import datetime
import socket
import ssl
from typing import Any

import pytest
import pytest_twisted
from klein import Klein
from twisted.logger import capturedLogs

from stretchfs.devcluster.tls import make_dev_ca, ssl_endpoint
from stretchfs.errors import TlsRejected
from stretchfs.web.jsonio import write_json
from tests.helpers import CLUSTER_KEY, raw_http


class _Hello:
    app = Klein()

    @app.route("/ping", methods=["GET"])
    def ping(self, request: Any) -> bytes:
        return write_json(request, {"ok": True})


def _closed_within(port: int, payload: bytes, seconds: float) -> bool:
    """Send `payload`; True when the server closes or resets within `seconds` (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(payload)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return True


def _client_hello(ca_file: str) -> bytes:
    """The first flight of a real TLS client (a ClientHello record)."""
    context = ssl.create_default_context(cafile=ca_file)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def _plain_and_tls(tmp_path: Any, handshake_timeout: float = 10.0
                         ) -> tuple[list[Any], int, int, str]:
    """A plain and a TLS listener of one site; (services, plain port, TLS port, CA file)."""
    from twisted.internet import reactor

    from stretchfs.roles import http_services

    now = datetime.datetime.now(datetime.timezone.utc)
    ca = make_dev_ca(str(tmp_path / "tls"), now)
    cert = ca.issue(str(tmp_path / "tls"), "node", "127.0.0.1", now)
    services = http_services(
        reactor, ["tcp:0:interface=127.0.0.1",
                  ssl_endpoint(0, "127.0.0.1", cert.cert_file, cert.key_file)],
        _Hello().app.resource(), "test", max_body=1000, handshake_timeout=handshake_timeout)
    ports = []
    for service in services:
        service.startService()
        ports.append((await service.ready).port)
    return services, ports[0], ports[1], ca.ca_file


async def _stop(services: list[Any]) -> None:
    for service in services:
        await service.stopService()


def _get(ca_file: str, port: int) -> Any:
    from twisted.internet import reactor

    from stretchfs.wire.http import JsonClient, make_http_client

    client = JsonClient(make_http_client(reactor, persistent=False, ca_file=ca_file),
                         "https://127.0.0.1:{}".format(port), CLUSTER_KEY, 5.0, reactor)
    return client.json("GET", "/ping")


@pytest_twisted.ensureDeferred
async def test_tls_client_on_the_plain_port_is_answered_at_once(tmp_path) -> None:
    """A ClientHello sent to the plain HTTP port gets a 400 and a close, not a 60 s hang."""
    from twisted.internet.threads import deferToThread

    services, plain, _tls, ca_file = await _plain_and_tls(tmp_path)
    try:
        seen = await deferToThread(raw_http, plain, _client_hello(ca_file), read_timeout=2.0)
        assert seen.reply.startswith(b"HTTP/1.1 400 "), seen.reply[:80]
        assert b"TLS" in seen.reply
        assert seen.closed
    finally:
        await _stop(services)


@pytest.mark.parametrize("sent", ["garbage", "truncated ClientHello", "plain HTTP request"])
@pytest_twisted.ensureDeferred
async def test_broken_clients_on_the_tls_port_are_closed_and_others_served(
        tmp_path, sent: str) -> None:
    """Garbage, half a ClientHello or plain HTTP on the TLS port is closed within seconds,
    and a good client is served meanwhile."""
    from twisted.internet.threads import deferToThread

    services, _plain, tls, ca_file = await _plain_and_tls(tmp_path, handshake_timeout=1.0)
    try:
        payload = {"garbage": b"\x00\xff" * 40 + b"\r\n\r\n",
                   "truncated ClientHello": _client_hello(ca_file)[:60],
                   "plain HTTP request": b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"}[sent]
        broken = deferToThread(_closed_within, tls, payload, 3.0)
        assert await _get(ca_file, tls) == {"ok": True}
        assert await broken
    finally:
        await _stop(services)


@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_is_reported_as_such_once_per_peer(tmp_path) -> None:
    """Without the private CA the call fails with TlsRejected naming the peer and the reason,
    logged once for two calls; with `ca_file` it succeeds."""
    services, _plain, tls, ca_file = await _plain_and_tls(tmp_path)
    other = make_dev_ca(str(tmp_path / "other"), datetime.datetime.now(datetime.timezone.utc))
    try:
        from twisted.internet import reactor

        from stretchfs.wire.http import JsonClient, make_http_client

        http = make_http_client(reactor, persistent=False, ca_file=other.ca_file)
        client = JsonClient(http, "https://127.0.0.1:{}".format(tls), CLUSTER_KEY, 5.0,
                             reactor)
        with capturedLogs() as events:
            for _ in range(2):
                with pytest.raises(TlsRejected) as error:
                    await client.json("GET", "/ping")
                assert "https://127.0.0.1:{}".format(tls) in str(error.value)
                assert "certificate verify failed" in str(error.value)
        assert len([e for e in events if e.get("event") == "tls_failed"]) == 1
        assert await _get(ca_file, tls) == {"ok": True}
    finally:
        await _stop(services)


@pytest_twisted.ensureDeferred
async def test_self_check_reaches_its_own_tls_listener(tmp_path) -> None:
    """A TLS-only node's self-check answers over TLS whatever names its certificate holds."""
    from twisted.internet import reactor

    from stretchfs.pingnet.selfcheck import http_ping
    from stretchfs.wire.http import make_http_client

    services, _plain, tls, _ca_file = await _plain_and_tls(tmp_path)
    try:
        client = make_http_client(reactor, persistent=False, verify=False)
        await http_ping(client, "https://127.0.0.1:{}/ping".format(tls), reactor)
    finally:
        await _stop(services)
