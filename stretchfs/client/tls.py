"""`Trust`: the client's TLS context, which loads the certificates it trusts on first use.

What is trusted is what httpx trusts by default: `ca_file` when given (read
at once, so a bad one fails at once), else `$SSL_CERT_FILE`, else
`$SSL_CERT_DIR`, else certifi's bundle.  Loading a bundle costs about 0.1 s
of CPU (150 certificates), as much as sending 30 MiB: it is loaded at the
first TLS connection, so a client that only speaks plain HTTP never pays it,
and one `Trust` can serve every `Client` of a program (the CLI's parallel
uploads share one).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any


class Trust(ssl.SSLContext):
    """A TLS client context (hostname and chain checked) that loads its CAs at its first wrap."""

    def __new__(cls, ca_file: str | None = None) -> "Trust":
        """A PROTOCOL_TLS_CLIENT context (`ca_file` is taken by __init__)."""
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, ca_file: str | None = None) -> None:
        self._lock = threading.Lock()
        self._loaded = bool(ca_file)
        if ca_file:
            self.load_verify_locations(cafile=ca_file)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Load the trusted certificates if not yet done, then wrap."""
        self._load()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """Load the trusted certificates if not yet done, then wrap (TLS in TLS, asyncio)."""
        self._load()
        return super().wrap_bio(*args, **kwargs)

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._loaded = True
