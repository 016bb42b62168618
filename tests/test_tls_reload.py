"""TLS listeners of `ssl:` endpoints: session resumption, and renewed certificates
picked up without a restart."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.web.server import Site

from stretchfs.devcluster.tls import make_dev_ca, ssl_endpoint
from stretchfs.web.listen import ListeningService
from stretchfs.web.tls import CERT_CHECK_SECONDS, ReloadingContext, TlsListen
from tests.test_tls_listeners import _Hello

NOW = datetime.datetime.now(datetime.timezone.utc)


def _issue(tmp_path: Any, ca: Any, later: float = 0.0) -> Any:
    """(Re)write node.pem/node.key with a new certificate; mtime moved by `later`."""
    cert = ca.issue(str(tmp_path / "tls"), "node", "127.0.0.1", NOW)
    for path in (cert.cert_file, cert.key_file):
        stat = os.stat(path)
        os.utime(path, (stat.st_atime + later, stat.st_mtime + later))
    return cert


def _serial(pem_path: str) -> int:
    from cryptography import x509

    with open(pem_path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read()).serial_number


def test_ssl_descriptions_are_read_like_twisted_reads_them() -> None:
    """Port, interface, backlog, escaped paths, and certKey defaulting to privateKey."""
    listen = TlsListen.parse(r"ssl:8443:interface=127.0.0.1:backlog=9:privateKey=/a\:b/k.pem")
    assert listen == TlsListen(port=8443, interface="127.0.0.1", backlog=9,
                               private_key="/a:b/k.pem", cert_key="/a:b/k.pem")
    assert TlsListen.parse("ssl:port=443:certKey=c.pem:privateKey=k.pem:extraCertChain=x"
                           ).extra_cert_chain == "x"
    for bad in ("tcp:80", "ssl:https", "ssl:443:sslmethod=SSLv3_METHOD"):
        with pytest.raises(ValueError):
            TlsListen.parse(bad)


def _handshake(port: int, ca_file: str, session: Any = None,
               context: ssl.SSLContext | None = None) -> tuple[Any, bool, int]:
    """One GET /ping over TLS; (session, whether it was resumed, server cert serial)."""
    context = context or ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            tls.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
            from cryptography import x509

            serial = x509.load_der_x509_certificate(tls.getpeercert(True)).serial_number
            return tls.session, tls.session_reused, serial


async def _listen(tmp_path: Any, ca: Any) -> tuple[ListeningService, int]:
    from twisted.internet import reactor

    cert = _issue(tmp_path, ca)
    service = ListeningService(reactor, ssl_endpoint(0, "127.0.0.1", cert.cert_file,
                                                     cert.key_file),
                               Site(_Hello().app.resource()), "test")
    service.startService()
    return service, (await service.ready).port


@pytest_twisted.ensureDeferred
async def test_a_returning_client_resumes_its_tls_session(tmp_path) -> None:
    """A client's second connection resumes the session of its first (no full handshake)."""
    from twisted.internet import threads

    ca = make_dev_ca(str(tmp_path / "tls"), NOW)
    service, port = await _listen(tmp_path, ca)
    client = ssl.create_default_context(cafile=ca.ca_file)
    try:
        session, resumed, _ = await threads.deferToThread(_handshake, port, ca.ca_file, None,
                                                           client)
        assert not resumed
        _, resumed, _ = await threads.deferToThread(_handshake, port, ca.ca_file, session,
                                                    client)
        assert resumed
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_renewed_certificate_is_served_to_new_connections(tmp_path) -> None:
    """After the files are renewed, the next check serves the new certificate; a half-written
    renewal is logged once and the previous certificate kept."""
    from twisted.internet import threads

    ca = make_dev_ca(str(tmp_path / "tls"), NOW)
    cert = _issue(tmp_path, ca)
    context = ReloadingContext(TlsListen.parse(ssl_endpoint(0, "127.0.0.1", cert.cert_file,
                                                            cert.key_file)))
    from twisted.internet import reactor
    from twisted.internet.endpoints import SSL4ServerEndpoint

    port = await SSL4ServerEndpoint(reactor, 0, context, interface="127.0.0.1").listen(
        Site(_Hello().app.resource()))
    number = port.getHost().port
    try:
        first = (await threads.deferToThread(_handshake, number, ca.ca_file))[2]
        assert first == _serial(cert.cert_file)
        assert not context.reload_if_changed()
        with open(cert.cert_file, "r+b") as handle:  # caught half-way through a renewal
            handle.truncate(100)
        os.utime(cert.cert_file, (0, os.stat(cert.cert_file).st_mtime + 10))
        with capturedLogs() as events:
            assert not context.reload_if_changed()
            assert not context.reload_if_changed()
        assert [e.get("event") for e in events].count("tls_reload_failed") == 1
        assert (await threads.deferToThread(_handshake, number, ca.ca_file))[2] == first
        renewed = _issue(tmp_path, ca, later=20)
        assert context.reload_if_changed()
        served = (await threads.deferToThread(_handshake, number, ca.ca_file))[2]
        assert served == _serial(renewed.cert_file) != first
    finally:
        await port.stopListening()


def test_the_listener_checks_its_certificate_on_the_clock(tmp_path) -> None:
    """A TLS listener looks at its certificate files every CERT_CHECK_SECONDS, and stops
    looking when it stops."""
    clock = MemoryReactorClock()
    ca = make_dev_ca(str(tmp_path / "tls"), NOW)
    cert = _issue(tmp_path, ca)
    service = ListeningService(clock, ssl_endpoint(8443, "127.0.0.1", cert.cert_file,
                                                   cert.key_file), Site(_Hello().app.resource()),
                               "test")
    service.startService()
    context = clock.sslServers[0][2]
    before = context.getContext()
    renewed = _issue(tmp_path, ca, later=20)
    clock.advance(CERT_CHECK_SECONDS)
    after = context.getContext()
    assert after is not before
    from OpenSSL import SSL

    served = SSL.Connection(after, None).get_certificate().to_cryptography().serial_number
    assert served == _serial(renewed.cert_file)
    service.stopService()
    assert clock.getDelayedCalls() == []
