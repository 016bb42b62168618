"""`MasterClient`: every master route of docs/master-api.md, for the other roles.

Every attempt gives up after `timeout` seconds without progress (see
`stretchfs.wire.http.Deadline`).  Failures surface as `PeerUnavailable`
(master unreachable or stalled) or `UpstreamError` (a non-2xx answer;
`.code` tells 404 from 410 ...).

With several masters (`[cluster] master_urls`, docs/ha.md) the client sticks
to the one that last answered.  A master that fails to answer (refused,
stalled, cut off, 502/503/504) is skipped for `MASTER_DOWN_SECONDS` and the
call moves on to the next one, each master tried at most once per call, each
attempt under its own deadline:

- a call that is idempotent (every read, every "set" and every removal, the
  feeds, an inventory publish, which applies each store's add/remove of a hash
  once however often it is sent) moves on after any of those failures;
- a call that is not (`ONCE`: user creation, a password reset, purchase
  creation, removing a peer; the master draws the new token or password, so a
  repeat makes a second one) moves on only when the connection was refused,
  the one failure in which the first master surely never saw the request;
- a login is retried like an idempotent call: a repeat leaves at worst an
  unused session, which expires after `[master] session_ttl`;
- a stream moves on only while no row was handed over yet.
NDJSON streams are read chunk by chunk and handed over one row at a time,
so a million-row snapshot never sits in memory as one body.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence, TypeVar
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from stretchfs.errors import PeerRefused, PeerUnavailable, UpstreamError
from stretchfs.web.jsonio import decode_json
from stretchfs.wire.http import JsonClient

log = Logger()
T = TypeVar("T")

MAX_NDJSON_LINE_BYTES = 1024 * 1024
MASTER_DOWN_SECONDS = 5.0
RETRY_CODES = (502, 503, 504)


class NdjsonSplitter:
    """Splits a byte stream into decoded JSON lines, calling `on_row` for each."""

    def __init__(self, on_row: Callable[[Any], None]) -> None:
        self._on_row = on_row
        self._buffer = b""
        self.rows = 0

    def feed(self, chunk: bytes) -> None:
        """Consume one chunk of the stream."""
        data = self._buffer + chunk
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_NDJSON_LINE_BYTES:
            raise UpstreamError(200, b"NDJSON line too long")
        for line in lines:
            if line:
                self.rows += 1
                self._on_row(decode_json(line))

    def close(self) -> None:
        """Flush a last line that had no newline."""
        if self._buffer.strip():
            self.rows += 1
            self._on_row(decode_json(self._buffer))
        self._buffer = b""


class MasterClient:
    """Talks to the masters at `base_urls` (one URL or a list) with the cluster key.

    `reader`, a prism's node name, is sent with every feed read: the master
    then knows the prism follows its feeds and lets it catch up before it stops.
    """

    def __init__(self, http: HTTPClient, base_urls: str | Sequence[str], cluster_key: str,
                 timeout: float, clock: IReactorTime, reader: str = "") -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("no master URL")
        self._masters = [JsonClient(http, url, cluster_key, timeout, clock) for url in urls]
        self._clock = clock
        self._current = 0
        self._down_until = [0.0] * len(urls)
        self._reader = {"reader": reader} if reader else {}

    @property
    def base_url(self) -> str:
        """The base URL of the master in use."""
        return self._masters[self._current].base_url

    def _order(self) -> list[int]:
        """Masters to try: the one in use, then the others in turn; those that failed
        in the last `MASTER_DOWN_SECONDS` last."""
        count = len(self._masters)
        ring = [(self._current + step) % count for step in range(count)]
        now = self._clock.seconds()
        return sorted(ring, key=lambda index: self._down_until[index] > now)

    async def _call(self, attempt: Callable[[JsonClient], Awaitable[T]],
                    idempotent: Callable[[], bool]) -> T:
        """`attempt` on each master in turn until one answers (see the module docstring)."""
        order = self._order()
        for step, index in enumerate(order):
            try:
                result = await attempt(self._masters[index])
            except (PeerUnavailable, UpstreamError) as exc:
                if not _master_failed(exc):
                    raise
                self._down_until[index] = self._clock.seconds() + MASTER_DOWN_SECONDS
                last = step + 1 == len(order)
                if last or not (isinstance(exc, PeerRefused) or idempotent()):
                    raise
                log.warn("master {url} failed ({error}); trying {next}",
                         url=self._masters[index].base_url, error=str(exc),
                         next=self._masters[order[step + 1]].base_url, event="master_failover")
                continue
            self._current = index
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _json(self, method: str, path: str, body: Any = None,
                    params: dict[str, Any] | None = None, wait: float = 0.0,
                    idempotent: bool = True) -> Any:
        """One JSON call on the first master that answers; `wait` (a long-poll's) is
        added to the deadline."""
        async def attempt(master: JsonClient) -> Any:
            return await master.json(method, path, body, params=params,
                                     timeout=master.timeout + wait if wait else None)

        return await self._call(attempt, lambda: idempotent)

    # -- peers --------------------------------------------------------------
    async def register_peer(self, record: dict[str, Any]) -> dict[str, Any]:
        """Register (or refresh the address of) this node."""
        return await self._json("POST", "/peers/register", record)

    async def list_peers(self) -> list[dict[str, Any]]:
        """Every registered peer with its flags."""
        return (await self._json("GET", "/peers"))["peers"]

    async def update_peer(self, name: str, **flags: bool) -> dict[str, Any]:
        """Set `active` and/or `writable` of a peer."""
        return await self._json("POST", "/peers/{}/update".format(quote(name)), flags)

    async def drain_peer(self, name: str) -> dict[str, Any]:
        """Make a store read-only and have its copies made on other stores."""
        return await self._json("POST", "/peers/{}/drain".format(quote(name)))

    async def remove_peer(self, name: str, force: bool = False) -> dict[str, Any]:
        """Remove a peer from the registry (`force`: even with the only copy of something)."""
        return await self._json("POST", "/peers/{}/remove".format(quote(name)),
                                {"force": True} if force else None, idempotent=False)

    async def repair_status(self) -> dict[str, Any]:
        """The repair planner's state (`GET /repair/status`, docs/repair.md)."""
        return await self._json("GET", "/repair/status")

    # -- users and sessions ------------------------------------------------------
    async def create_user(self, username: str, password: str | None = None,
                          operator: bool = False) -> dict[str, Any]:
        """Create a user (an operator may sign in to the dashboard); the answer holds
        the (generated) password."""
        body: dict[str, Any] = {"username": username, "operator": operator}
        if password is not None:
            body["password"] = password
        return await self._json("POST", "/users", body, idempotent=False)

    async def set_operator(self, username: str, operator: bool) -> dict[str, Any]:
        """Grant or revoke a user's operator flag."""
        return await self._json("POST", "/users/{}/operator".format(quote(username)),
                                {"operator": operator})

    async def list_users(self) -> list[dict[str, Any]]:
        """Every user (without password hashes)."""
        return (await self._json("GET", "/users"))["users"]

    async def deactivate_user(self, username: str) -> dict[str, Any]:
        """Deactivate a user and end its sessions."""
        return await self._json("POST", "/users/{}/deactivate".format(quote(username)))

    async def login(self, username: str, password: str, ip: str = "") -> dict[str, Any]:
        """Log in; the full SDK-shaped answer with `session`."""
        return await self._json("POST", "/user/login",
                                {"username": username, "password": password, "ip": ip})

    async def logout(self, token: str) -> dict[str, Any]:
        """End a session."""
        return await self._json("POST", "/user/logout", {"token": token})

    async def validate_session(self, token: str) -> dict[str, Any]:
        """The session of `token` (UpstreamError 401 when invalid)."""
        return (await self._json("POST", "/user/session/validate", {"token": token}))[
            "session"]

    async def update_session(self, token: str, data: dict[str, Any]) -> dict[str, Any]:
        """Replace the session's data."""
        return await self._json("POST", "/user/session/update",
                                {"token": token, "data": data})

    async def reset_password(self, token: str) -> dict[str, Any]:
        """Give the session's user a new generated password."""
        return await self._json("POST", "/user/password/reset", {"token": token},
                                idempotent=False)

    # -- inventory ---------------------------------------------------------
    async def lookup(self, sha1: str) -> dict[str, Any] | None:
        """The inventory row of `sha1`, None when no store holds it."""
        try:
            return await self._json("GET", "/inventory/{}".format(sha1))
        except UpstreamError as exc:
            if exc.code == 404:
                return None
            raise

    async def lookup_many(self, hashes: list[str]) -> dict[str, Any]:
        """Rows of several hashes: `{hash: row or None}`."""
        return await self._json("POST", "/inventory/lookup", {"hashes": hashes})

    async def publish(self, store: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
        """Publish a batch of a store's adds/removes (idempotent)."""
        return await self._json("POST", "/inventory/publish",
                                {"store": store, "changes": changes})

    async def store_inventory(self, store: str, on_row: Callable[[Any], None]) -> int:
        """Stream what the master believes `store` holds; returns the row count."""
        return await self.stream_ndjson("/inventory/store/{}".format(quote(store)), on_row)

    async def inventory_snapshot(self, on_row: Callable[[Any], None]) -> str:
        """Stream the full inventory; returns the cursor to follow the feed from."""
        return await self._snapshot("/inventory/snapshot", on_row)

    async def inventory_feed(self, after: str, wait: float, limit: int = 10000) -> dict[str, Any]:
        """Changes after `after` (UpstreamError 410 when the cursor was trimmed)."""
        return await self._json("GET", "/inventory/feed",
                                params={"after": after, "wait": wait, "limit": limit,
                                        **self._reader},
                                wait=wait)

    # -- purchases ---------------------------------------------------------
    async def create_purchase(self, purchase: dict[str, Any]) -> dict[str, Any]:
        """Create a purchase; the master draws the token (so a failed attempt moves to the
        next master only when its connection was refused)."""
        return await self._json("POST", "/purchases", purchase, idempotent=False)

    async def get_purchase(self, token: str, owner: str | None = None) -> dict[str, Any] | None:
        """The purchase of `token`, None when unknown, expired or (given `owner`) not theirs."""
        try:
            return await self._json("GET", "/purchases/{}".format(quote(token)),
                                    params=None if owner is None else {"owner": owner})
        except UpstreamError as exc:
            if exc.code == 404:
                return None
            raise

    async def remove_purchase(self, token: str, owner: str | None = None) -> dict[str, Any]:
        """Remove a purchase (given `owner`, only theirs): `{"token", "count"}`."""
        return await self._json("POST", "/purchases/{}/remove".format(quote(token)),
                                None if owner is None else {"owner": owner})

    async def purchase_snapshot(self, on_row: Callable[[Any], None]) -> str:
        """Stream every unexpired purchase; returns the feed cursor."""
        return await self._snapshot("/purchases/snapshot", on_row)

    async def purchase_feed(self, after: str, wait: float, limit: int = 10000) -> dict[str, Any]:
        """Purchase changes after `after` (UpstreamError 410 when trimmed)."""
        return await self._json("GET", "/purchases/feed",
                                params={"after": after, "wait": wait, "limit": limit,
                                        **self._reader},
                                wait=wait)

    async def prune_purchases(self) -> dict[str, Any]:
        """Remove expired purchases now: `{"pruned": n}`."""
        return await self._json("POST", "/purchases/prune")

    # -- streaming ---------------------------------------------------------
    async def stream_ndjson(self, path: str, on_row: Callable[[Any], None]) -> int:
        """GET an NDJSON route, calling `on_row` per line; returns the row count.

        Its deadline is idle: the stream may take as long as it needs while
        the master keeps sending.  It moves to the next master only while no
        row was handed to `on_row`.
        """
        delivered = 0

        def counted(row: Any) -> None:
            nonlocal delivered
            delivered += 1
            on_row(row)

        async def attempt(master: JsonClient) -> int:
            splitter = NdjsonSplitter(counted)
            with master.deadline() as deadline:
                # unbuffered: treq would otherwise keep every chunk of the stream in memory.
                response = await master.request(deadline, "GET", path, unbuffered=True)
                await deadline.collect(response, splitter.feed)
            splitter.close()
            return splitter.rows

        return await self._call(attempt, lambda: delivered == 0)

    async def _snapshot(self, path: str, on_row: Callable[[Any], None]) -> str:
        header: dict[str, Any] = {}

        def route(row: Any) -> None:
            if not header:
                if not isinstance(row, dict) or "cursor" not in row:
                    raise UpstreamError(200, b"snapshot without a cursor line")
                header.update(row)
                return
            on_row(row)

        await self.stream_ndjson(path, route)
        if not header:
            raise UpstreamError(200, b"empty snapshot")
        return str(header["cursor"])


def _master_failed(error: Exception) -> bool:
    """True when `error` means the master did not answer (rather than refused the call)."""
    return isinstance(error, PeerUnavailable) or (
        isinstance(error, UpstreamError) and error.code in RETRY_CODES)
