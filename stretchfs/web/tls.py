"""TLS listeners: `ssl:` endpoints served with session resumption and certificates
that are picked up again when their files change.

Twisted's own `ssl:` endpoint builds a context with session tickets switched
off and reads the certificate once.  `TlsListen.parse` reads the same endpoint
syntax (`ssl:PORT:interface=...:privateKey=...:certKey=...:extraCertChain=...
:dhParameters=...:backlog=...`, backslash escapes), and `ReloadingContext`
serves it: TLS 1.2 or newer, a server-side session cache and session tickets
(so a returning client resumes without a full handshake), and, whenever
`reload_if_changed` finds the files' modification times changed (an ACME
client renewed them), a new context for new connections.  A renewal caught
half-written is logged and the old certificate kept until the next check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

CERT_CHECK_SECONDS = 30.0
_SESSION_CONTEXT = b"stretchfs"
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS"
_KEYS = ("port", "interface", "backlog", "privateKey", "certKey", "extraCertChain",
         "dhParameters")


def _fields(description: str) -> list[tuple[str | None, str]]:
    """Split an endpoint description on ':' into (key or None, value), with '\\' escapes."""
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    current = ""
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current += next(chars, "")
        elif char == ":":
            fields.append((key, current))
            key, current = None, ""
        elif char == "=" and key is None:
            key, current = current, ""
        else:
            current += char
    fields.append((key, current))
    return fields


@dataclass(frozen=True)
class TlsListen:
    """A parsed `ssl:` server endpoint."""

    port: int
    private_key: str
    cert_key: str
    interface: str = ""
    backlog: int = 50
    extra_cert_chain: str = ""
    dh_parameters: str = ""

    @classmethod
    def parse(cls, description: str) -> "TlsListen":
        """The endpoint of an `ssl:` string; ValueError for anything else or unknown keys."""
        fields = _fields(description)
        if fields[0] != (None, "ssl"):
            raise ValueError("not an ssl: endpoint")
        values: dict[str, str] = {}
        for index, (key, value) in enumerate(fields[1:]):
            name = key if key is not None else ("port" if index == 0 else "")
            if name not in _KEYS:
                raise ValueError("ssl: endpoint: unknown option {!r}".format(key or value))
            values[name] = value
        if not values.get("port", "").isdigit():
            raise ValueError("ssl: endpoint: expected a port number")
        private_key = values.get("privateKey", "server.pem")
        return cls(port=int(values["port"]), private_key=private_key,
                   cert_key=values.get("certKey") or private_key,
                   interface=values.get("interface", ""),
                   backlog=int(values.get("backlog") or 50),
                   extra_cert_chain=values.get("extraCertChain", ""),
                   dh_parameters=values.get("dhParameters", ""))

    def files(self) -> tuple[str, ...]:
        """The files the context is built from."""
        return tuple(path for path in (self.cert_key, self.private_key, self.extra_cert_chain,
                                       self.dh_parameters) if path)


def build_context(listen: TlsListen) -> SSL.Context:
    """A server context for `listen`: TLS >= 1.2, session cache and tickets on."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_cipher_list(_CIPHERS)
    context.use_certificate_chain_file(listen.cert_key)
    if listen.extra_cert_chain:
        from OpenSSL import crypto

        with open(listen.extra_cert_chain, "rb") as handle:
            chain = handle.read()
        marker = b"-----BEGIN CERTIFICATE-----"
        for block in chain.split(marker)[1:]:
            context.add_extra_chain_cert(crypto.load_certificate(crypto.FILETYPE_PEM,
                                                                 marker + block))
    context.use_privatekey_file(listen.private_key)
    context.check_privatekey()
    if listen.dh_parameters:
        context.load_tmp_dh(listen.dh_parameters)
    context.set_session_id(_SESSION_CONTEXT)
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return context


def _stamp(listen: TlsListen) -> tuple[float, ...]:
    stamps = []
    for path in listen.files():
        try:
            stamps.append(os.stat(path).st_mtime)
        except OSError:
            stamps.append(-1.0)
    return tuple(stamps)


@implementer(IOpenSSLContextFactory)
class ReloadingContext:
    """The context factory of a TLS listener (`getContext` for each new connection)."""

    def __init__(self, listen: TlsListen) -> None:
        self.listen = listen
        self._stamp = _stamp(listen)
        self._context = build_context(listen)
        self._failed_stamp: tuple[float, ...] | None = None

    def getContext(self) -> SSL.Context:
        """The current context."""
        return self._context

    def reload_if_changed(self) -> bool:
        """Build a new context when the files changed; True when it was replaced."""
        stamp = _stamp(self.listen)
        if stamp == self._stamp or stamp == self._failed_stamp:
            return False
        try:
            context = build_context(self.listen)
        except (OSError, SSL.Error) as exc:
            self._failed_stamp = stamp
            log.error("TLS certificate {cert} changed but cannot be used ({error}); "
                      "keeping the previous one", cert=self.listen.cert_key, error=str(exc),
                      event="tls_reload_failed")
            return False
        self._context, self._stamp, self._failed_stamp = context, stamp, None
        log.info("TLS certificate {cert} reloaded", cert=self.listen.cert_key,
                 event="tls_reloaded")
        return True
