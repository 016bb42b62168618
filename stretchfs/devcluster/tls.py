"""A private CA and one certificate per node for `stretchfs dev up`.

Made with the `cryptography` package (Twisted's TLS extra brings it): an
ECDSA P-256 CA valid for ten years and, per node, a leaf certificate for its
loopback address (and `localhost`) signed by it.  Keys are written 0600.
Clients trust the local cluster with `curl --cacert <workdir>/tls/ca.pem`,
nodes with `[tls] ca_file`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class NodeCertificate:
    """Where one node's certificate and key were written."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class DevCA:
    """The private CA of a local cluster: its PEM file and signing key."""

    ca_file: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, folder: str, name: str, host: str, now: datetime.datetime
              ) -> NodeCertificate:
        """Write `<folder>/<name>.pem` and `<name>.key` for `host` (an IP address)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
        cert = (_builder(name, self.cert.subject, key, now, LEAF_DAYS)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        paths = NodeCertificate(os.path.join(folder, name + ".pem"),
                                os.path.join(folder, name + ".key"))
        write_file(paths.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        write_file(paths.key_file, _key_pem(key), 0o600)
        return paths


def make_dev_ca(folder: str, now: datetime.datetime) -> DevCA:
    """A new CA whose certificate is `<folder>/ca.pem` (its key stays in memory)."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "StretchFS dev CA")])
    cert = (_builder("StretchFS dev CA", subject, key, now, CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    ca_file = os.path.join(folder, "ca.pem")
    write_file(ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return DevCA(ca_file, key, cert)


def _builder(common_name: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             now: datetime.datetime, days: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days)))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: str, data: bytes, mode: int) -> None:
    """Replace `path` with `data`, created with `mode` from the first byte on."""
    temporary = path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def ssl_endpoint(port: int, host: str, cert_file: str, key_file: str) -> str:
    """The Twisted `ssl:` server endpoint string for a certificate on `host:port`."""
    return "ssl:{}:interface={}:privateKey={}:certKey={}".format(
        port, host, _escape(key_file), _escape(cert_file))


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")
