"""Delivery: `GET|HEAD /<token>/<filename>` and `/static/<hash>/<filename>`.

The hot path of the prism.  `PrismRoot` is a raw twisted.web resource in
front of the Klein app: a two-segment GET/HEAD (or `/static/...`) is answered
here without Klein's routing; everything else goes to Klein.  It reads what
delivery needs of the request into a `Caller` and writes `Delivery`'s answer
(a location, or the error it raised) back.  A purchase or content found in the
mirrors is answered synchronously; a local miss goes through the lookup chain
(`prism/lookup.py`: master, then stores; never a false 404).

Redirect target: an *available* store holding the content, rotating over the
copies; URL = store base URL (scheme from X-Forwarded-Proto /
X-Forwarded-Protocol when given) + content path + signed query + the
client's query string (+ `start=0` for video types when neither `start` nor
`html5` is present).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from stretchfs import errors
from stretchfs.config import PrismConfig
from stretchfs.prism.lookup import ContentLookup
from stretchfs.prism.mirror import InventoryRecord, PurchaseMirror, PurchaseRecord
from stretchfs.web.errormap import render_error, status_for
from stretchfs.wire.identifiers import is_purchase_token, public_sha1
from stretchfs.wire.signing import content_path, delivery_secret, signed_query
from stretchfs.wire.upstream import relay

log = Logger()

KLEIN_PREFIXES = frozenset({b"", b"user", b"content", b"health", b"metrics", b"ping", b"pingnet",
                            b"static"})
"""First path segments that belong to the API, never tokens (PrismRoot adds Klein's own)."""


def referrer_allowed(patterns: tuple[str, ...], referer: str | None) -> bool:
    """True when the Referer's host matches a pattern (no patterns: anything goes).

    A pattern is a host name (`example.com` also allows `www.example.com`),
    `*.example.com` (subdomains only), or a URL whose host is used.  Patterns
    are compared as text, never run as regular expressions.
    """
    if not patterns:
        return True
    if not referer:
        return False
    try:
        host = (urlsplit(referer).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    if not host:
        return False
    for raw in patterns:
        pattern = raw.strip().lower()
        if "://" in pattern:
            pattern = (urlsplit(pattern).hostname or "").lower()
        pattern = pattern.split("/", 1)[0].rstrip(".")
        if not pattern:
            continue
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
            continue
        if host == pattern or host.endswith("." + pattern):
            return True
    return False


def client_query(uri: bytes) -> str:
    """The raw query string of `uri` ('' when none or empty)."""
    if b"?" not in uri:
        return ""
    return uri.split(b"?", 1)[1].decode("latin-1").strip("?&")


def redirect_query(signed: str, query: str, ext: str, video_types: tuple[str, ...]) -> str:
    """signed + client query + start=0 for videos lacking start/html5."""
    parts = [signed]
    if query:
        parts.append(query)
    if ext in video_types:
        names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
        if "start" not in names and "html5" not in names:
            parts.append("start=0")
    return "&".join(parts)


@dataclass(frozen=True, slots=True)
class Caller:
    """What delivery needs of a request, read by `PrismRoot`: the scheme asked for by
    X-Forwarded-Proto (None: the store's own), the raw query string, the Referer."""

    scheme: str | None
    query: str
    referer: str | None


class Delivery:
    """Resolves tokens and hashes to signed store URLs."""

    def __init__(self, *, config: PrismConfig, peers: Any,
                 purchases: Callable[[], PurchaseMirror], lookup: ContentLookup, master: Any,
                 clock: IReactorTime) -> None:
        self._peers = peers
        self._purchases = purchases
        self._lookup = lookup
        self._master = master
        self._clock = clock
        self._secret = delivery_secret(config.cluster.key)
        self._life = config.prism.delivery_life
        self._video = tuple(config.prism.video_types)
        self._deny_static = frozenset(config.prism.deny_static_types)
        self._turn = itertools.count()

    # -- lookups -----------------------------------------------------------
    async def purchase(self, token: str) -> PurchaseRecord:
        """The purchase of `token`: mirror, else master; NotFound / NotReady."""
        found = self._purchases().get(token, self._clock.seconds())
        if found is not None:
            return found
        row = await relay(self._master.get_purchase(token), "master", "look the purchase up")
        if row is None or float(row.get("expires") or 0) <= self._clock.seconds():
            raise errors.NotFound("purchase not found")
        # Not copied into the mirror: the feed brings it in order with any removal.
        return PurchaseRecord(row["hash"], row.get("ext") or "bin", int(row["expires"]),
                              tuple(row.get("referrer") or ()))

    def _available(self, stores: tuple[str, ...]) -> list[Any]:
        """The records of the available stores among `stores`."""
        return [peer for peer in (self._peers.get(name) for name in stores
                                  if self._peers.is_available(name)) if peer is not None]

    def _usable(self, record: InventoryRecord) -> bool:
        return bool(self._available(record.stores))

    def _static_usable(self, record: InventoryRecord) -> bool:
        """A type refused on /static needs no available store: it is answered 403."""
        return record.ext in self._deny_static or self._usable(record)

    # -- redirects ---------------------------------------------------------
    def location(self, caller: Caller, sha1: str, record: InventoryRecord,
                 until: float | None = None) -> str:
        """The signed URL on an available store holding the content (PeerUnavailable: none).

        It expires `delivery_life` from now, or at `until` (a purchase's own
        expiry) when that comes first: a URL never outlives its purchase.
        """
        available = self._available(record.stores)
        if not available:
            raise errors.PeerUnavailable("no available store holds this content")
        peer = available[next(self._turn) % len(available)]
        base = peer.url or "http://{}:{}".format(peer.host, peer.port)
        if caller.scheme is not None:
            base = caller.scheme + base[base.index("://"):]
        path = content_path(sha1, record.ext)
        expires = self._clock.seconds() + self._life
        if until is not None:
            expires = min(expires, until)
        query = redirect_query(signed_query(self._secret, path, int(expires)), caller.query,
                               record.ext, self._video)
        return "{}{}?{}".format(base, path, query)

    def local_token(self, caller: Caller, token: str) -> str | None:
        """The location of a purchase delivery the mirrors answer alone, else None.

        Synchronous (the hot path): Forbidden for a refused referrer,
        PeerUnavailable when no store the mirror names is available.
        """
        if not is_purchase_token(token):
            return None
        purchase = self._purchases().get(token, self._clock.seconds())
        record = None if purchase is None else self._lookup.local(purchase.sha1)
        if purchase is None or record is None:
            return None
        if not referrer_allowed(purchase.referrer, caller.referer):
            raise errors.Forbidden("referrer not allowed")
        return self.location(caller, purchase.sha1, record, purchase.expires)

    async def resolve_token(self, caller: Caller, token: str) -> str:
        """Location for a purchase delivery."""
        if not is_purchase_token(token):
            raise errors.NotFound("purchase not found")
        purchase = await self.purchase(token)
        if not referrer_allowed(purchase.referrer, caller.referer):
            raise errors.Forbidden("referrer not allowed")
        # The store holds the file under the extension it was stored with; a purchase
        # may name another (clients send what they like), which would be a dead URL.
        record = await self._lookup.find_one(purchase.sha1, self._usable)
        return self.location(caller, purchase.sha1, record, purchase.expires)

    async def resolve_static(self, caller: Caller, sha1: str, filename: str) -> str:
        """Location for a static delivery (store probes rationed: no session)."""
        canonical = public_sha1(sha1)
        if canonical is None:
            raise errors.NotFound("content not found")
        asked = filename.rsplit(".", 1)[1].lower() if "." in filename else ""
        if asked in self._deny_static:
            raise errors.Forbidden("invalid static file type: purchase it")
        record = await self._lookup.find_one(canonical, self._static_usable, limited=True)
        if record.ext in self._deny_static:
            raise errors.Forbidden("invalid static file type: purchase it")
        return self.location(caller, canonical, record)


def caller_of(request: IRequest) -> Caller:
    """The plain values delivery reads from a twisted.web request."""
    proto = (request.getHeader(b"x-forwarded-proto")
             or request.getHeader(b"x-forwarded-protocol") or b"").strip().lower()
    referer = request.getHeader(b"referer")
    return Caller(proto.decode("ascii") if proto in (b"http", b"https") else None,
                  client_query(request.uri),
                  referer.decode("latin-1") if referer is not None else None)


class PrismRoot(Resource):
    """Answers delivery paths directly; hands every other request to Klein."""

    isLeaf = True

    def __init__(self, delivery: Delivery, klein_resource: Any, reserved: frozenset[bytes],
                 counter: Any) -> None:
        super().__init__()
        self._delivery = delivery
        self._klein = klein_resource
        self._reserved = KLEIN_PREFIXES | reserved
        self._counter = counter
        self._counted: dict[int, Any] = {}

    def _count(self, code: int) -> None:
        child = self._counted.get(code)
        if child is None:
            child = self._counted[code] = self._counter.labels(str(code))
        child.inc()

    def _redirect(self, request: Any, location: str) -> bytes:
        self._count(302)
        request.setResponseCode(302)
        request.setHeader(b"Location", location.encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", b"0")
        return b""

    def _error(self, request: Any, exc: BaseException) -> bytes:
        if status_for(exc) is None:
            log.error("delivery failed: {error!r}", error=exc)
        body = render_error(request, exc)
        self._count(request.code)
        return body

    def render(self, request: Any) -> Any:
        """Dispatch: delivery fast path, or Klein."""
        if request.method in (b"GET", b"HEAD"):
            segments = request.path.split(b"/")
            if len(segments) == 3 and segments[1] not in self._reserved and segments[2]:
                return self._token(request, segments[1].decode("latin-1"))
            if len(segments) == 4 and segments[1] == b"static" and segments[3]:
                return self._static(request, segments[2].decode("latin-1"),
                                    segments[3].decode("latin-1"))
        return self._klein.render(request)

    def _token(self, request: Any, token: str) -> Any:
        caller = caller_of(request)
        try:
            location = self._delivery.local_token(caller, token)
        except errors.PeerUnavailable:
            location = None  # the slow path looks further
        except errors.StretchFSError as exc:
            return self._error(request, exc)
        if location is not None:
            return self._redirect(request, location)
        return self._later(request, self._delivery.resolve_token(caller, token))

    def _static(self, request: Any, sha1: str, filename: str) -> Any:
        return self._later(request, self._delivery.resolve_static(caller_of(request), sha1,
                                                                  filename))

    def _later(self, request: Any, coro: Any) -> Any:
        d = ensureDeferred(coro)
        finished = []
        request.notifyFinish().addErrback(lambda _: finished.append(True))

        def ok(location: str) -> None:
            if not finished:
                request.write(self._redirect(request, location))
                request.finish()

        def failed(failure: Any) -> None:
            if not finished:
                request.write(self._error(request, failure.value))
                request.finish()

        d.addCallbacks(ok, failed)
        return NOT_DONE_YET
