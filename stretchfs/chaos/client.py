"""The chaos load's clients: `stretchfs.client.Client` with its failures classified.

A scenario counts every failed call, so these clients do not retry (an
application would): a 503 during a fault is reported, not hidden behind a
backoff.  `probe` is one GET that does not follow redirects, for scenarios
that check the prism's own answer.  Every call is bounded by a timeout.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass

import httpx

from stretchfs.client import Client, Content, IntegrityError, StretchFSError


class CallFailed(Exception):
    """A call did not give the expected answer; `kind` classifies it for reports."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__("{}: {}".format(kind, detail) if detail else kind)
        self.kind = kind


def failure(operation: str, exc: StretchFSError) -> CallFailed:
    """`<operation>-<status>`, `connection` (no answer) or `<operation>-wrong-hash`."""
    if isinstance(exc, IntegrityError):
        return CallFailed(operation + "-wrong-hash", exc.message)
    if not exc.status:
        return CallFailed("connection", exc.message)
    return CallFailed("{}-{}".format(operation, exc.status), exc.message[:200])


@dataclass
class Reply:
    """One HTTP answer of `probe`."""

    status: int
    headers: dict[str, str]
    body: bytes


def probe(url: str, timeout: float = 10.0) -> Reply:
    """One GET without following redirects; no answer raises CallFailed("connection")."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise CallFailed("connection", "GET {}: {}".format(url, exc)) from None
    return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                 response.content)


class PrismUser:
    """An application talking to one prism with a session."""

    def __init__(self, prism_url: str, username: str, password: str,
                 timeout: float = 10.0) -> None:
        self.client = Client(prism_url, username, password, timeout=timeout, retries=0)

    def login(self) -> str:
        """Log in; returns the session token."""
        try:
            return self.client.login().token
        except StretchFSError as exc:
            raise failure("login", exc) from None

    def upload(self, data: bytes, filename: str = "file.bin") -> Content:
        """Upload one file; its SHA1 is checked against the answer."""
        try:
            return self.client.upload(io.BytesIO(data), name=filename)
        except StretchFSError as exc:
            raise failure("upload", exc) from None

    def purchase(self, sha1: str, ext: str, life: int = 3600) -> str:
        """Purchase a content; returns the purchase token."""
        try:
            return self.client.purchase(sha1, ext, life=life).token
        except StretchFSError as exc:
            raise failure("purchase", exc) from None

    def download(self, token: str, filename: str, sha1: str) -> int:
        """Follow the delivery redirect, check the bytes against `sha1`; returns their size."""
        with tempfile.TemporaryDirectory(prefix="stretchfs-chaos-") as folder:
            path = os.path.join(folder, filename)
            try:
                done = self.client.download(self.client.download_url(token, filename), path,
                                            resume=False)
            except IntegrityError as exc:
                raise CallFailed("corrupt", exc.message) from None
            except StretchFSError as exc:
                raise failure("download", exc) from None
        if done.sha1 != sha1:
            raise CallFailed("corrupt", "{} hashes to {}".format(token[:8], done.sha1))
        return done.size

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
