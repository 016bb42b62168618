"""`/content/retrieve`: fetch a remote http(s) URL without being an SSRF hole.

Every connection goes through `SafeEndpointFactory`: the host name is
resolved first, every resolved address is checked (loopback, private,
link-local, multicast, reserved and unspecified addresses are refused unless
`[retrieve] allow_private`), and the connection is made to the checked
address itself, so a DNS answer cannot change between check and connect.
Redirects are followed here, hop by hop (at most `MAX_REDIRECTS`), so each
hop is checked the same way.  The body streams into a temp file while hashed
(`web/intake.py`), with a size cap and an overall timeout.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
import unicodedata
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import idna
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from stretchfs.errors import Forbidden, InvalidInput, PayloadTooLarge, PeerUnavailable
from stretchfs.web.intake import Backpressure, BodyReceiver, Executor, FileIntake, Watermarks
from stretchfs.wire.http import discard_body

log = Logger()

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_SECONDS = 10
ALLOWED_METHODS = ("GET", "POST")
MAX_HEADERS = 50
_REDIRECT_CODES = (301, 302, 303, 307, 308)
# RFC 7230 token: what a header name may be made of.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_ASCII_HOST_RE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?\Z")
# Printable ASCII is kept as sent (existing %-escapes included); the rest is %-encoded.
_KEPT_AS_IS = "".join(chr(code) for code in range(0x21, 0x7F))

Resolver = Callable[[str], Awaitable[list[str]]]


def address_refused(ip: str) -> bool:
    """True for loopback, private, link-local, multicast, reserved or unspecified addresses."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def system_resolver(reactor: Any) -> Resolver:
    """Resolve with getaddrinfo in the reactor's thread pool."""
    from twisted.internet.threads import deferToThreadPool

    def lookup(host: str) -> list[str]:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def resolve(host: str) -> list[str]:
        return await deferToThreadPool(reactor, reactor.getThreadPool(), lookup, host)

    return resolve


async def checked_addresses(host: str, resolve: Resolver, allow_private: bool) -> list[str]:
    """The addresses of `host`; Forbidden when any is refused."""
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = await resolve(host)
        except (OSError, socket.gaierror) as exc:
            raise InvalidInput("cannot resolve {}: {}".format(host, exc)) from None
    if not addresses:
        raise InvalidInput("cannot resolve {}".format(host))
    if not allow_private:
        for ip in addresses:
            if address_refused(ip):
                raise Forbidden("refusing to fetch from a private or loopback address")
    return addresses


class _CheckedEndpoint:
    """Resolves, checks, then connects to the checked address (TLS by host name)."""

    def __init__(self, factory: "SafeEndpointFactory", scheme: bytes, host: str,
                 port: int) -> None:
        self._factory = factory
        self._scheme = scheme
        self._host = host
        self._port = port

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        """Connect `protocol_factory` to the first checked address."""
        return Deferred.fromCoroutine(self._connect(protocol_factory))

    async def _connect(self, protocol_factory: Any) -> Any:
        factory = self._factory
        addresses = await checked_addresses(self._host, factory.resolve, factory.allow_private)
        ip = addresses[0]
        kind = TCP6ClientEndpoint if ":" in ip else TCP4ClientEndpoint
        endpoint: Any = kind(factory.reactor, ip, self._port, timeout=CONNECT_TIMEOUT_SECONDS)
        if self._scheme == b"https":
            endpoint = wrapClientTLS(optionsForClientTLS(self._host), endpoint)
        return await endpoint.connect(protocol_factory)


@implementer(IAgentEndpointFactory)
class SafeEndpointFactory:
    """An Agent endpoint factory that only connects to allowed addresses."""

    def __init__(self, reactor: Any, resolve: Resolver, allow_private: bool) -> None:
        self.reactor = reactor
        self.resolve = resolve
        self.allow_private = allow_private

    def endpointForURI(self, uri: Any) -> _CheckedEndpoint:
        """The checked endpoint of `uri`."""
        if uri.scheme not in (b"http", b"https"):
            raise InvalidInput("only http and https URLs can be retrieved")
        return _CheckedEndpoint(self, uri.scheme, uri.host.decode("ascii"), uri.port)


@dataclass(frozen=True)
class RetrieveSpec:
    """A checked retrieve request: an ASCII URL, a method and headers safe to send."""

    url: str
    method: str
    headers: dict[str, str]


def parse_spec(body: dict[str, Any]) -> RetrieveSpec:
    """The `request` (or `url`) of a retrieve body; InvalidInput naming any bad field."""
    spec = body.get("request", body)
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise InvalidInput("expected 'request': {url, method?, headers?} or 'url'")
    method = spec.get("method") or "GET"
    if not isinstance(method, str) or method.upper() not in ALLOWED_METHODS:
        raise InvalidInput("'method' must be GET or POST")
    return RetrieveSpec(normalize_url(spec["url"]), method.upper(),
                        _checked_headers(spec.get("headers") or {}))


def _checked_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidInput("expected 'headers': an object of strings")
    if len(headers) > MAX_HEADERS:
        raise InvalidInput("'headers' has more than {} entries".format(MAX_HEADERS))
    for name, value in headers.items():
        if not _TOKEN_RE.match(name):
            raise InvalidInput("header name {!r} is not a valid HTTP header name".format(name))
        if any(ord(c) > 0xFF for c in value):
            raise InvalidInput("header {!r}: the value must be latin-1 text".format(name))
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            raise InvalidInput("header {!r}: the value must not contain control characters "
                               "(CR, LF, NUL, ...)".format(name))
    return headers


def normalize_url(url: str, field: str = "'url'") -> str:
    """`url` as sent on the wire: IDNA host, non-ASCII path and query %-encoded,
    no fragment.  InvalidInput, naming `field`, for anything that cannot be fetched."""
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") for c in url):
        raise InvalidInput("{} must not contain spaces, control characters (CR, LF, ...) "
                           "or lone surrogates".format(field))
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidInput("{} is malformed: {}".format(field, exc)) from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput("{} must be an absolute http:// or https:// URL".format(field))
    if "@" in parts.netloc:
        raise InvalidInput("{} must not contain credentials: send an Authorization header"
                           .format(field))
    if port == 0:
        raise InvalidInput("{} has port 0".format(field))
    host = _ascii_host(host, field)
    netloc = "[{}]".format(host) if ":" in host else host
    if port is not None:
        netloc += ":{}".format(port)
    return urlunsplit((parts.scheme, netloc, quote(parts.path or "/", safe=_KEPT_AS_IS),
                       quote(parts.query, safe=_KEPT_AS_IS), ""))


def _ascii_host(host: str, field: str) -> str:
    """An IP literal, a valid ASCII name, or the IDNA (UTS 46) encoding of a Unicode name."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        if not host.isascii():
            return idna.encode(host, uts46=True).decode("ascii")
        if _ASCII_HOST_RE.match(host):
            for label in host.split("."):
                if label.startswith("xn--"):
                    idna.decode(label)
            return host
    except idna.IDNAError as exc:
        raise InvalidInput("{} has an invalid host name: {}".format(field, exc)) from None
    raise InvalidInput("{} has an invalid host name".format(field))


@dataclass
class Fetched:
    """A fetched body on disk."""

    path: str
    sha1: str
    size: int
    content_type: str
    url: str


class Retriever:
    """Fetches remote URLs into temp files through a checked Agent."""

    def __init__(self, *, agent: Any, clock: Any, max_bytes: int, timeout: float,
                 tmp_dir: str, run: Executor, marks: Watermarks = Watermarks()) -> None:
        """`run(function, *args)` hashes and writes bodies (the reactor's thread pool
        in production); the remote connection is paused past the `marks`."""
        self._run = run
        self._marks = marks
        self._agent = agent
        self._clock = clock
        self._max = max_bytes
        self._timeout = timeout
        self._tmp_dir = tmp_dir or tempfile.gettempdir()

    def fetch(self, url: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> Deferred[Fetched]:
        """Fetch `url` (following checked redirects) into a temp file."""
        d = Deferred.fromCoroutine(self._fetch(url, method, headers or {}))
        timer = self._clock.callLater(self._timeout, d.cancel)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if isinstance(getattr(result, "value", None), CancelledError):
                raise PeerUnavailable("remote fetch took longer than {:.0f}s".format(
                    self._timeout))
            return result

        return d.addBoth(done)

    async def _fetch(self, url: str, method: str, headers: dict[str, str]) -> Fetched:
        raw_headers = Headers({b"User-Agent": [b"StretchFS-prism"]})
        for name, value in headers.items():
            if name.lower() not in ("host", "content-length", "transfer-encoding"):
                raw_headers.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
        url = normalize_url(url)
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"),
                                                     raw_headers, None)
            except (InvalidInput, Forbidden):
                raise
            except CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any network failure is the remote's
                raise PeerUnavailable("cannot fetch {}: {}".format(
                    url, exc.__class__.__name__)) from None
            if response.code in _REDIRECT_CODES:
                location = response.headers.getRawHeaders(b"location", [b""])[0]
                discard_body(response)
                if not location:
                    raise PeerUnavailable("redirect without a Location")
                url = normalize_url(urljoin(url, _header_text(location)),
                                    "the remote's redirect Location")
                if response.code == 303:
                    method = "GET"
                continue
            if not 200 <= response.code < 300:
                discard_body(response)
                raise InvalidInput("remote answered {}".format(response.code))
            if isinstance(response.length, int) and response.length > self._max:
                discard_body(response)
                raise PayloadTooLarge("remote file larger than {} bytes".format(self._max))
            return await self._save(response, url)
        raise InvalidInput("too many redirects")

    async def _save(self, response: Any, url: str) -> Fetched:
        fd, path = tempfile.mkstemp(prefix="stretchfs-retrieve-", dir=self._tmp_dir)
        # Cancelling (the fetch timeout) also drops the remote connection, or a
        # slow remote would keep streaming into nowhere.
        receiver = BodyReceiver(lambda _producer: intake, clock=self._clock, idle_timeout=None)
        intake = FileIntake(path, os.fdopen(fd, "wb"), self._run,
                            Backpressure(receiver, self._marks), max_bytes=self._max,
                            what="remote file")
        try:
            response.deliverBody(receiver)
            await receiver.done
            sha1 = await intake.finish()
        except BaseException:
            intake.abandon()
            raise
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0].decode("latin-1")
        return Fetched(path=path, sha1=sha1, size=intake.size, content_type=ctype, url=url)


def _header_text(value: bytes) -> str:
    """A header value sent by a remote: UTF-8 when it is, latin-1 otherwise."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
