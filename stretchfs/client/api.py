"""`Client`: the public prism API from Python, synchronous, on httpx.

Every call has a deadline (`timeout`, seconds without progress).  A 503 or a
failed connection is retried `retries` times with doubling backoff (an
upload only when its source can be read again); a 401 on a session call is
answered by logging in again once, when the client holds credentials.
Uploads stream from the file and hash on the way (stretchfs.client.multipart);
TLS trust is loaded at the first https connection (stretchfs.client.tls),
and several clients can share one `ssl_context`.  Downloads stream to disk
and resume through `Range` after a cut connection.  From asyncio, run the
calls in a thread (`await asyncio.to_thread(client.upload, path)`); one
`Client` is not meant for several threads at once — use one per thread.

With a plain-http prism (no proxy in the environment, no `transport`) the
JSON calls and uploads of regular files skip httpx: they go over one
kept-alive `rawhttp.Connection`, which sends a file with sendfile while a
thread hashes it.  httpx (and TLS) are imported at the first call that needs
them (https, downloads, file objects that are not regular files), so a
program that only uploads over plain http never loads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from stretchfs.client.errors import (
    IntegrityError,
    StretchFSError,
    Unauthorized,
    Unavailable,
    error_for,
)
from stretchfs.client.models import Content, ContentRecord, Download, Purchase, Session
from stretchfs.client.multipart import UploadBody
from stretchfs.client.rawhttp import Connection, ShortFile, TransportFailure

if TYPE_CHECKING:
    import ssl

    import httpx

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when unknown)."""

TOKEN_HEADER = "X-STRETCHFS-Token"
MAX_BACKOFF_SECONDS = 8.0
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


class _Answer(Protocol):
    """An answer of either transport (httpx.Response, rawhttp.RawResponse)."""

    status_code: int

    def json(self) -> Any:
        """The body as JSON."""


def _message(response: _Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return "HTTP {}".format(response.status_code)


class Client:
    """A StretchFS prism, as an application uses it.

    `Client(url, username, password)` logs in on the first call that needs a
    session; `token=` reuses an existing session instead.  `ssl_context`
    (e.g. one `Trust` shared by several clients) replaces `ca_file`.
    """

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 token: str | None = None, ca_file: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.session: Session | None = Session(token) if token else None
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._timeout = timeout
        self._verify: ssl.SSLContext | None = ssl_context
        if ssl_context is None and ca_file:  # read now: a bad CA file fails at once
            from stretchfs.client.tls import Trust

            self._verify = Trust(ca_file)
        self._transport = transport
        self._httpx: httpx.Client | None = None
        parts = urllib.parse.urlsplit(self.url)
        plain = parts.scheme == "http" and transport is None and parts.hostname is not None \
            and not any(os.environ.get(name) for name in PROXY_VARIABLES)
        self._raw = Connection(parts.hostname or "", parts.port or 80, timeout) \
            if plain else None
        self._raw_prefix = parts.path

    @property
    def _http(self) -> httpx.Client:
        """The httpx client, built (and httpx imported) at its first use."""
        if self._httpx is None:
            import httpx

            from stretchfs.client.tls import Trust

            self._httpx = httpx.Client(verify=self._verify or Trust(),
                                       transport=self._transport,
                                       timeout=httpx.Timeout(self._timeout))
        return self._httpx

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (the session stays valid on the server)."""
        if self._httpx is not None:
            self._httpx.close()
        if self._raw is not None:
            self._raw.close()

    # -- sessions ----------------------------------------------------------
    def login(self) -> Session:
        """Log in with the client's credentials; the session is kept for later calls."""
        if not self.username or self._password is None:
            raise Unauthorized("no credentials to log in with", 401)
        answer = self._call("POST", "/user/login", {"username": self.username,
                                                    "password": self._password}, session=False)
        self.session = Session.from_answer(answer["session"])
        return self.session

    def logout(self) -> None:
        """End the session on every prism."""
        if self.session is not None:
            self._call("POST", "/user/logout", renew=False)
            self.session = None

    def validate(self) -> Session:
        """The session as the cluster sees it (raises Unauthorized when it is not valid)."""
        return Session.from_answer(self._call("POST", "/user/session/validate",
                                              renew=False)["session"])

    # -- content -----------------------------------------------------------
    def upload(self, source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None,
               progress: Progress | None = None, fields: dict[str, str] | None = None
               ) -> Content:
        """Upload one file (a path or a binary file object), streamed; SHA1 checked."""
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                return self.upload(handle, name=name or os.path.basename(os.fspath(source)),
                                   progress=progress, fields=fields)
        filename = name or os.path.basename(str(getattr(source, "name", "") or "upload.bin"))
        body = UploadBody(source, filename, fields=fields, progress=progress)
        raw = self._raw if body.sendable_fd() is not None else None

        def request() -> _Answer:
            if raw is not None:
                headers = {**self._headers(),
                           "Content-Type": body.headers["Content-Type"]}
                return raw.request("POST", self._raw_prefix + "/content/upload", headers,
                                   body.pieces())
            return self._send("POST", "/content/upload",
                              headers={**self._headers(), **body.headers}, content=body)

        try:
            answer = self._session_call(request, retry=body.seekable())
        except ShortFile as exc:
            raise IntegrityError("{} changed while it was sent: {}".format(
                filename, exc)) from None
        sent = body.hexdigest()
        content = Content.from_answer(answer["files"]["file"])
        if content.hash != sent:
            raise IntegrityError("the cluster stored {} but {} was sent".format(
                content.hash, sent))
        return content

    def retrieve(self, url: str, *, extension: str | None = None,
                 headers: dict[str, str] | None = None) -> Content:
        """Have the prism fetch a remote http(s) URL into the cluster."""
        body: dict[str, Any] = {"request": {"url": url, "headers": headers or {}}}
        if extension:
            body["extension"] = extension
        return Content.from_answer(self._call("POST", "/content/retrieve", body))

    def detail(self, sha1: str) -> ContentRecord:
        """What the cluster knows of one hash (NotFound when it holds no copy)."""
        return ContentRecord.from_answer(self._call("POST", "/content/detail", {"hash": sha1}))

    def exists(self, hashes: Iterable[str]) -> dict[str, ContentRecord]:
        """Records of several hashes; unknown ones have `exists` False (no error)."""
        answer = self._call("POST", "/content/exists", {"hash": list(hashes)})
        return {sha1: ContentRecord.from_answer(dict(record, hash=sha1))
                for sha1, record in answer.items()}

    # -- purchases ---------------------------------------------------------
    def purchase(self, sha1: str, ext: str, *, life: float | None = None,
                 referrer: Iterable[str] = (), ip: str | None = None) -> Purchase:
        """Buy a time-limited download right for one file."""
        body: dict[str, Any] = {"hash": sha1, "ext": ext, "referrer": list(referrer)}
        if life is not None:
            body["life"] = life
        if ip is not None:
            body["ip"] = ip
        return Purchase.from_answer(self._call("POST", "/content/purchase", body))

    def purchase_detail(self, token: str) -> Purchase:
        """One of this user's purchases (NotFound when unknown, expired or another's)."""
        return Purchase.from_answer(self._call("POST", "/content/purchase/detail",
                                               {"token": token}))

    def purchase_remove(self, token: str) -> int:
        """Remove one of this user's purchases: 1 when it existed, else 0."""
        return int(self._call("POST", "/content/purchase/remove",
                              {"token": token}).get("count", 0))

    def download_url(self, purchase: Purchase | str, filename: str) -> str:
        """The public download link of a purchase (no session needed to follow it)."""
        token = purchase.token if isinstance(purchase, Purchase) else purchase
        return "{}/{}/{}".format(self.url, urllib.parse.quote(token, safe=""),
                                 urllib.parse.quote(filename))

    def download(self, url: str, dest: str | os.PathLike[str], *,
                 progress: Progress | None = None, resume: bool = True) -> Download:
        """Stream `url` (a download link; redirects followed) to `dest`.

        Bytes already in `dest` are kept and only the rest is asked for
        (`Range`) when `resume` is true; a cut connection resumes the same
        way, up to `retries` times.  The SHA1 is checked against the store's
        ETag.
        """
        import httpx

        path = os.fspath(dest)
        start = os.path.getsize(path) if resume and os.path.exists(path) else 0
        if not resume and os.path.exists(path):
            os.unlink(path)
        for attempt in range(self.retries + 1):
            try:
                return self._download_once(url, path, start, progress)
            except (httpx.TransportError, Unavailable) as exc:
                if attempt == self.retries:
                    status = exc.status if isinstance(exc, Unavailable) else 0
                    raise Unavailable("download of {} failed: {}".format(url, exc),
                                      status) from None
                self._sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def _download_once(self, url: str, path: str, resumed_from: int,
                       progress: Progress | None) -> Download:
        have = os.path.getsize(path) if os.path.exists(path) else 0
        headers = {"Range": "bytes={}-".format(have)} if have else {}
        with self._http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code == 416 and have:
                total: int | None = have  # already complete
                etag = ""
            else:
                if response.status_code not in (200, 206):
                    response.read()
                    raise error_for(response.status_code, _message(response))
                if response.status_code == 200:
                    have = 0
                length = response.headers.get("content-length")
                total = have + int(length) if length is not None else None
                etag = response.headers.get("etag", "").strip('"')
                with open(path, "ab" if have else "wb") as out:
                    done = have
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
        sha1 = _sha1_of(path)
        if etag and len(etag) == 40 and etag != sha1:
            raise IntegrityError("downloaded bytes hash to {}, the store says {}".format(
                sha1, etag))
        return Download(path=path, size=os.path.getsize(path), sha1=sha1,
                        resumed_from=resumed_from)

    # -- plumbing ----------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self.session is None:
            self.login()
        assert self.session is not None
        return {TOKEN_HEADER: self.session.token}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request through httpx; its transport errors become TransportFailure."""
        import httpx

        try:
            return self._http.request(method, self.url + path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportFailure(str(exc)) from None

    def _call(self, method: str, path: str, body: Any = None, *, session: bool = True,
              renew: bool = True) -> Any:
        def request() -> _Answer:
            headers = self._headers() if session else {}
            content = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                content = json.dumps(body).encode()
            if self._raw is not None:
                return self._raw.request(method, self._raw_prefix + path, headers,
                                         [content] if content else [])
            return self._send(method, path, headers=headers, content=content)

        if not session:
            return self._answer(self._retrying(request, retry=True))
        return self._session_call(request, retry=True, renew=renew)

    def _session_call(self, request: Callable[[], _Answer], *, retry: bool,
                      renew: bool = True) -> Any:
        try:
            return self._answer(self._retrying(request, retry=retry))
        except Unauthorized:
            if not renew or not self.username or self._password is None:
                raise
            self.login()
            return self._answer(self._retrying(request, retry=retry))

    def _retrying(self, request: Callable[[], _Answer], *, retry: bool) -> _Answer:
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = request()
            except TransportFailure as exc:
                if attempt + 1 == attempts:
                    raise Unavailable("cannot reach {}: {}".format(self.url, exc), 0) from None
            else:
                if response.status_code != 503 or attempt + 1 == attempts:
                    return response
            self._sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int) -> float:
        return float(min(self.backoff * (2 ** attempt), MAX_BACKOFF_SECONDS))

    def _answer(self, response: _Answer) -> Any:
        if response.status_code >= 400:
            raise error_for(response.status_code, _message(response))
        try:
            return response.json()
        except ValueError:
            raise StretchFSError("the prism answered {} with a body that is not JSON".format(
                response.status_code), response.status_code) from None


def _sha1_of(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in _chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(1024 * 1024)
        if not chunk:
            return
        yield chunk
