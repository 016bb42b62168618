"""The client's TLS trust: loaded at the first TLS connection, still verifying."""

from __future__ import annotations

import datetime
import ssl

import pytest

from stretchfs.client import Client
from stretchfs.client.tls import Trust
from stretchfs.devcluster.tls import DevCA, make_dev_ca

NOW = datetime.datetime.now(datetime.timezone.utc)


def _server(ca: DevCA, folder: str) -> ssl.SSLContext:
    cert = ca.issue(folder, "node", "127.0.0.1", NOW)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> None:
    """A TLS handshake in memory (no sockets); raises what the client's side raises."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    ours = client.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
    theirs = server.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for side in (ours, theirs):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                if side is ours:
                    raise
        if done == 2:
            return
    raise AssertionError("no handshake after 10 rounds")


def test_the_default_bundle_is_loaded_at_the_first_tls_connection_only(tmp_path) -> None:
    """A plain-HTTP client never loads a CA bundle; the first TLS wrap loads it once."""
    trust = Trust()
    with Client("http://prism", token="t" * 64, ssl_context=trust):
        pass
    assert trust.cert_store_stats()["x509_ca"] == 0
    other = make_dev_ca(str(tmp_path / "other"), NOW)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(trust, _server(other, str(tmp_path / "other")))
    loaded = trust.cert_store_stats()["x509_ca"]
    assert loaded > 0
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(trust, _server(other, str(tmp_path / "other")))
    assert trust.cert_store_stats()["x509_ca"] == loaded


def test_a_ca_file_is_trusted_and_nothing_else(tmp_path) -> None:
    """With a CA file, its certificates verify and another CA's do not."""
    ca = make_dev_ca(str(tmp_path / "ca"), NOW)
    other = make_dev_ca(str(tmp_path / "other"), NOW)
    trust = Trust(ca.ca_file)
    _handshake(trust, _server(ca, str(tmp_path / "ca")))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(trust, _server(other, str(tmp_path / "other")))
    assert trust.cert_store_stats()["x509_ca"] == 1


def test_a_missing_ca_file_fails_at_once(tmp_path) -> None:
    """A CA file that cannot be read is an error when the client is built, not later."""
    with pytest.raises(FileNotFoundError):
        Client("https://prism", token="t" * 64, ca_file=str(tmp_path / "nope.pem"))
