"""Delivery: `GET|HEAD /<token>/<filename>` and `/static/<hash>/<filename>`.

The hot path of the prism.  `PrismRoot` is a raw twisted.web resource in
front of the Klein app: a two-segment GET/HEAD (or `/static/...`) is answered
here without Klein's routing; everything else goes to Klein.  A purchase or
content found in the mirrors is answered synchronously; a local miss asks the
master (never a false 404) and answers 503 if the master cannot be reached.

Redirect target: an *available* store holding the content, rotating over the
copies; URL = store base URL (scheme from X-Forwarded-Proto /
X-Forwarded-Protocol when given) + content path + signed query + the
client's query string (+ `start=0` for video types when neither `start` nor
`html5` is present).
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from stretchfs import errors
from stretchfs.prism.mirror import PurchaseRecord
from stretchfs.web.errormap import render_error, status_for
from stretchfs.wire.identifiers import is_purchase_token, public_sha1
from stretchfs.wire.signing import content_path, delivery_secret, signed_query

log = Logger()

KLEIN_PREFIXES = frozenset({b"", b"user", b"content", b"health", b"metrics", b"ping", b"pingnet",
                            b"static"})
"""First path segments that belong to the API, never tokens (PrismRoot adds Klein's own)."""
PROBE_SECONDS = 2.0
PROBE_PER_SECOND = 20.0
PROBE_BURST = 20


def referrer_allowed(patterns: tuple[str, ...], referer: bytes | None) -> bool:
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
        host = (urlsplit(referer.decode("latin-1")).hostname or "").lower().rstrip(".")
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


class Delivery:
    """Resolves tokens and hashes to signed store URLs."""

    def __init__(self, *, config: Any, peers: Any, purchases: Any, inventory: Any,
                 master: Any, clock: Any, store_client: Any = None) -> None:
        self._config = config
        self._store_client = store_client
        self._probe_tokens = float(PROBE_BURST)
        self._probe_refilled = clock.seconds() if clock is not None else 0.0
        self._peers = peers
        self._purchases = purchases
        self._inventory = inventory
        self._master = master
        self._clock = clock
        self._secret = delivery_secret(config.cluster.key)
        self._life = config.prism.delivery_life
        self._video = tuple(config.prism.video_types)
        self._deny_static = frozenset(config.prism.deny_static_types)
        self._turn = itertools.count()

    # -- lookups -----------------------------------------------------------
    def local_purchase(self, token: str) -> PurchaseRecord | None:
        """The unexpired purchase of `token` from the mirror."""
        return self._purchases().get(token, self._clock.seconds())

    async def purchase(self, token: str) -> PurchaseRecord:
        """The purchase of `token`: mirror, else master; NotFound / NotReady."""
        found = self.local_purchase(token)
        if found is not None:
            return found
        try:
            row = await self._master.get_purchase(token)
        except (errors.PeerUnavailable, errors.UpstreamError):
            raise errors.NotReady("purchase not in the local mirror and the master is "
                                  "unreachable") from None
        if row is None or float(row.get("expires") or 0) <= self._clock.seconds():
            raise errors.NotFound("purchase not found")
        # Not copied into the mirror: the feed brings it in order with any removal.
        return PurchaseRecord(row["hash"], row.get("ext") or "bin", int(row["expires"]),
                              tuple(row.get("referrer") or ()))

    async def stores_of(self, sha1: str, limited: bool = False) -> tuple[str, list[str]]:
        """(ext, stores) of `sha1`: mirror, else master, else the stores; NotFound / NotReady.

        `limited` (unauthenticated callers) rations the store probes.
        """
        record = self._inventory().get(sha1)
        if record is not None:
            return record.ext, list(record.stores)
        try:
            row = await self._master.lookup(sha1)
        except (errors.PeerUnavailable, errors.UpstreamError):
            raise errors.NotReady("content not in the local mirror and the master is "
                                  "unreachable") from None
        if row and row.get("stores"):
            return row.get("ext") or "bin", list(row["stores"])
        if limited and not self._take_probe():
            # Unknown to the master, and no store may be asked right now: saying 404
            # could be false (stores publish late after a master outage).
            raise errors.NotReady("content not in the local mirror; too many lookups of "
                                  "unknown content, retry shortly")
        found = (await self.probe_stores([sha1])).get(sha1)
        if found is not None:
            return found[0], found[2]
        raise errors.NotFound("content not found")

    def _take_probe(self) -> bool:
        """Token bucket of store probes for unauthenticated requests."""
        now = self._clock.seconds()
        self._probe_tokens = min(float(PROBE_BURST), self._probe_tokens +
                                 (now - self._probe_refilled) * PROBE_PER_SECOND)
        self._probe_refilled = now
        if self._probe_tokens < 1:
            return False
        self._probe_tokens -= 1
        return True

    async def probe_stores(self, hashes: list[str]) -> dict[str, tuple[str, int, list[str]]]:
        """Ask every available store whether it holds `hashes`: {hash: (ext, size, stores)}.

        NotReady when a store did not answer and some hash was not found.
        The last word before a 404: right after a master outage the stores may
        still be publishing what they received meanwhile, so the master (and
        the feeds) can lag behind them for a few seconds.
        """
        stores = self._peers.candidates("store") if self._peers is not None else []
        if not stores or self._store_client is None or not hashes:
            return {}
        calls = [ensureDeferred(self._store_client(peer).exists(hashes, timeout=PROBE_SECONDS))
                 for peer in stores]
        results = await DeferredList(calls, consumeErrors=True)
        found: dict[str, tuple[str, int, list[str]]] = {}
        silent = []
        for peer, (ok, answer) in zip(stores, results):
            if not ok or not isinstance(answer, dict):
                log.warn("store {store} did not answer an existence probe", store=peer.name)
                silent.append(peer.name)
                continue
            for sha1 in hashes:
                row = answer.get(sha1)
                if isinstance(row, dict) and row.get("exists"):
                    ext, size, names = found.get(sha1, (str(row.get("ext") or "bin"),
                                                        int(row.get("size") or 0), []))
                    names.append(peer.name)
                    found[sha1] = (ext, size, names)
        if found:
            log.info("{count} content(s) unknown to the master found on stores",
                     count=len(found), event="store_probe_hit")
        if silent and len(found) < len(set(hashes)):
            # A store that did not answer may hold what nobody else does: no false 404.
            raise errors.NotReady("store(s) {} did not answer; cannot tell whether the "
                                  "content exists".format(", ".join(sorted(silent))))
        return found

    # -- redirects ---------------------------------------------------------
    def location(self, request: Any, sha1: str, ext: str, stores: list[str],
                 until: float | None = None) -> bytes:
        """The signed URL on an available store holding the content.

        It expires `delivery_life` from now, or at `until` (a purchase's own
        expiry) when that comes first: a URL never outlives its purchase.
        """
        available = [self._peers.get(name) for name in stores if self._peers.is_available(name)]
        available = [p for p in available if p is not None]
        if not available:
            raise errors.PeerUnavailable("no available store holds this content")
        peer = available[next(self._turn) % len(available)]
        base = peer.url or "http://{}:{}".format(peer.host, peer.port)
        proto = (request.getHeader(b"x-forwarded-proto")
                 or request.getHeader(b"x-forwarded-protocol") or b"").strip().lower()
        if proto in (b"http", b"https"):
            base = proto.decode("ascii") + base[base.index("://"):]
        path = content_path(sha1, ext)
        expires = self._clock.seconds() + self._life
        if until is not None:
            expires = min(expires, until)
        expires = int(expires)
        query = redirect_query(signed_query(self._secret, path, expires),
                               client_query(request.uri), ext, self._video)
        return "{}{}?{}".format(base, path, query).encode("utf-8")

    async def resolve_token(self, request: Any, token: str) -> bytes:
        """Location for a purchase delivery."""
        if not is_purchase_token(token):
            raise errors.NotFound("purchase not found")
        purchase = await self.purchase(token)
        if not referrer_allowed(purchase.referrer, request.getHeader(b"referer")):
            raise errors.Forbidden("referrer not allowed")
        # The store holds the file under the extension it was stored with; a purchase
        # may name another (clients send what they like), which would be a dead URL.
        ext, stores = await self.stores_of(purchase.sha1)
        return await self.locate(request, purchase.sha1, ext, stores, until=purchase.expires)

    async def resolve_static(self, request: Any, sha1: str, filename: str) -> bytes:
        """Location for a static delivery."""
        canonical = public_sha1(sha1)
        if canonical is None:
            raise errors.NotFound("content not found")
        sha1 = canonical
        asked = filename.rsplit(".", 1)[1].lower() if "." in filename else ""
        if asked in self._deny_static:
            raise errors.Forbidden("invalid static file type: purchase it")
        ext, stores = await self.stores_of(sha1, limited=True)
        if ext in self._deny_static:
            raise errors.Forbidden("invalid static file type: purchase it")
        return await self.locate(request, sha1, ext, stores, limited=True)

    async def locate(self, request: Any, sha1: str, ext: str, stores: list[str],
                     limited: bool = False, until: float | None = None) -> bytes:
        """`location`, or when no store of `stores` is available, a second look.

        The stores a mirror names may all be down while a repair copy already
        exists elsewhere (the feed brings it a moment later): ask the master,
        then the stores themselves, before answering 503.
        """
        try:
            return self.location(request, sha1, ext, stores, until)
        except errors.PeerUnavailable:
            pass
        try:
            row = await self._master.lookup(sha1)
        except (errors.PeerUnavailable, errors.UpstreamError):
            row = None
        fresh = [name for name in (row or {}).get("stores") or [] if name not in stores]
        if fresh:
            try:
                return self.location(request, sha1, (row or {}).get("ext") or ext, fresh,
                                     until)
            except errors.PeerUnavailable:
                pass
        if limited and not self._take_probe():
            raise errors.PeerUnavailable("no available store holds this content")
        found = (await self.probe_stores([sha1])).get(sha1)
        if found is None:
            raise errors.PeerUnavailable("no available store holds this content")
        return self.location(request, sha1, found[0], found[2], until)


def _answer_error(request: Any, exc: BaseException) -> bytes:
    if status_for(exc) is None:
        log.error("delivery failed: {error!r}", error=exc)
    return render_error(request, exc)


def _answer_redirect(request: Any, location: bytes) -> bytes:
    request.setResponseCode(302)
    request.setHeader(b"Location", location)
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", b"0")
    return b""


class PrismRoot(Resource):
    """Answers delivery paths directly; hands every other request to Klein."""

    isLeaf = True

    def __init__(self, delivery: Delivery, klein_resource: Any,
                 reserved: frozenset[bytes] = frozenset(), counter: Any = None) -> None:
        super().__init__()
        self._delivery = delivery
        self._klein = klein_resource
        self._reserved = KLEIN_PREFIXES | reserved
        self._counter = counter
        self._counted: dict[int, Any] = {}

    def _count(self, code: int) -> None:
        if self._counter is None:
            return
        child = self._counted.get(code)
        if child is None:
            child = self._counted[code] = self._counter.labels(str(code))
        child.inc()

    def _redirect(self, request: Any, location: bytes) -> bytes:
        self._count(302)
        return _answer_redirect(request, location)

    def _error(self, request: Any, exc: BaseException) -> bytes:
        body = _answer_error(request, exc)
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
        delivery = self._delivery
        if is_purchase_token(token):
            # Fast path: everything local, no Deferred.
            purchase = delivery.local_purchase(token)
            if purchase is not None:
                record = delivery._inventory().get(purchase.sha1)
                if record is not None:
                    try:
                        if not referrer_allowed(purchase.referrer,
                                                request.getHeader(b"referer")):
                            raise errors.Forbidden("referrer not allowed")
                        return self._redirect(request, delivery.location(
                            request, purchase.sha1, record.ext, list(record.stores),
                            purchase.expires))
                    except errors.PeerUnavailable:
                        return self._later(request, delivery.locate(
                            request, purchase.sha1, record.ext, list(record.stores),
                            until=purchase.expires))
                    except errors.StretchFSError as exc:
                        return self._error(request, exc)
        return self._later(request, delivery.resolve_token(request, token))

    def _static(self, request: Any, sha1: str, filename: str) -> Any:
        return self._later(request, self._delivery.resolve_static(request, sha1, filename))

    def _later(self, request: Any, coro: Any) -> Any:
        d = ensureDeferred(coro)
        finished = []
        request.notifyFinish().addErrback(lambda _: finished.append(True))

        def ok(location: bytes) -> None:
            if not finished:
                request.write(self._redirect(request, location))
                request.finish()

        def failed(failure: Any) -> None:
            if not finished:
                request.write(self._error(request, failure.value))
                request.finish()

        d.addCallbacks(ok, failed)
        return NOT_DONE_YET
