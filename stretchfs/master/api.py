"""The master's HTTP API (docs/master-api.md): cluster state for the other roles.

Every route needs the cluster key except `/ping`, `/health`, `/metrics` and
the dashboard's (`/`, `/login`, `/logout`, `/dashboard/...`), which need a
dashboard session (docs/dashboard.md) and show nothing of the cluster without.
Handlers parse and validate, call one of the databases in this package, and
render; domain exceptions become status codes through `install_error_handlers`.

Stopping drains the feeds first (`drain`): writes that go on a feed are
refused (503), and the master keeps serving until every prism following a
feed has asked past its last change, so a purchase or an inventory change
acknowledged just before the stop is in every prism's mirror while the
master is away (bounded by `DRAIN_MAX_SECONDS`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from klein import Klein
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from stretchfs.config import MasterConfig
from stretchfs.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    Unauthorized,
)
from stretchfs.health import Readiness
from stretchfs.master import validate
from stretchfs.master.dashauth import DashboardSessions
from stretchfs.master.dashboard import STATIC_TYPES, dashboard_state, page, static_file
from stretchfs.master.drain import check_remove, drain
from stretchfs.master.feeds import FEED_PAGE_MAX_BYTES, FeedFollowers, FeedWaiters, long_poll
from stretchfs.master.inventory import MAX_LOOKUP_HASHES, Inventory, parse_changes
from stretchfs.master.keys import Keys
from stretchfs.master.metrics import MasterMetrics, counted
from stretchfs.master.nodeprobe import NodeProbe
from stretchfs.master.peers import PeerRegistry, parse_flags, parse_registration
from stretchfs.master.pingview import ClusterVerdicts, add_cluster_pingnet_routes
from stretchfs.master.purchases import Purchases
from stretchfs.master.repairstatus import add_repair_routes
from stretchfs.master.streaming import stream_ndjson
from stretchfs.master.users import Users
from stretchfs.redisstore import RedisStore
from stretchfs.roles import NodeAPI
from stretchfs.threads import RunBlocking
from stretchfs.web.auth import cluster_key_required
from stretchfs.web.common import add_common_routes
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.jsonio import read_json_object, write_json

log = Logger()

PUBLISH_MAX_BYTES = 8 * 1024 * 1024
FEED_MAX_LIMIT = 10_000
INVENTORY_FEED = "inventory"
PURCHASE_FEED = "purchases"
# A stopping master waits this long at most for its feed followers to catch up,
# looking every DRAIN_CHECK_SECONDS.
DRAIN_MAX_SECONDS = 3.0
DRAIN_CHECK_SECONDS = 0.02


def feed_write(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A write that goes on a feed: refused while the master drains, counted while in flight."""

    @functools.wraps(handler)
    async def wrapper(self: "MasterAPI", request: IRequest, *args: Any, **kwargs: Any) -> Any:
        if self.draining:
            raise NotReady("the master is shutting down")
        self.writes_in_flight += 1
        try:
            return await handler(self, request, *args, **kwargs)
        finally:
            self.writes_in_flight -= 1

    return wrapper


class MasterAPI(NodeAPI):
    """Routes of the master: cluster state for the other roles and operators.

    `run_blocking` runs password hashing off the reactor (the service passes the
    reactor's thread pool); `feed_page_max_bytes` caps the payload of a feed page.
    """

    app = Klein()
    install_error_handlers(app)
    add_common_routes(app, "master", welcome=False)
    add_cluster_pingnet_routes(app)
    add_repair_routes(app)

    def __init__(self, config: MasterConfig, *, readiness: Readiness,
                 metrics_registry: CollectorRegistry, redis: RedisStore, clock: Any,
                 run_blocking: RunBlocking, http: HTTPClient,
                 feed_page_max_bytes: int = FEED_PAGE_MAX_BYTES) -> None:
        super().__init__(config, readiness=readiness, metrics_registry=metrics_registry,
                         clock=clock)
        self.config = config
        self.redis = redis
        self.metrics = MasterMetrics(metrics_registry)
        self.keys = Keys(config.redis.prefix)
        self.waiters = FeedWaiters(clock)
        self.followers = FeedFollowers(clock)
        self.draining = False
        self.writes_in_flight = 0
        settings = config.master
        self.peers = PeerRegistry(redis, self.keys, clock)
        self.users = Users(redis, self.keys, clock, session_ttl=settings.session_ttl,
                           bcrypt_rounds=settings.bcrypt_rounds,
                           run_blocking=run_blocking,
                           on_login_failure=self._login_failed)
        self.inventory = Inventory(redis, self.keys, settings.feed_max_len,
                                   feed_page_max_bytes=feed_page_max_bytes,
                                   on_change=lambda: self.waiters.notify(INVENTORY_FEED))
        self.purchases = Purchases(redis, self.keys, clock, settings.feed_max_len,
                                   settings.prune_interval,
                                   feed_page_max_bytes=feed_page_max_bytes,
                                   on_change=lambda: self.waiters.notify(PURCHASE_FEED))
        self.dashboard_sessions = DashboardSessions(redis, self.keys, clock, self.users,
                                                    self.cluster_key)
        # what the dashboard shows of the nodes: the ping net's verdicts and
        # each node's own health
        self.verdicts = ClusterVerdicts(redis, config.redis.prefix, self.peers.list, clock)
        self.probe = NodeProbe(http, self.cluster_key, clock, self.peers.list, self.feed_cursors)

    def _login_failed(self, reason: str) -> None:
        self.metrics.login_failures.labels(reason=reason).inc()
        log.warn("login failed: {reason}", reason=reason, event="login_failed")

    def _body(self, request: IRequest, max_bytes: int | None = None) -> dict[str, Any]:
        return read_json_object(request, max_bytes or self.max_body)

    # -- dashboard (operators, behind a sign-in) ---------------------------------
    @app.route("/", methods=["GET"])
    @counted("dashboard")
    async def get_dashboard(self, request: IRequest) -> bytes:
        """The dashboard page for a signed-in operator; others are sent to /login."""
        session = await self.dashboard_sessions.session(request)
        if session is None:
            return _redirect(request, b"/login")
        return _html(request, page("dashboard.html", csrf=session["csrf"], who=session["who"]))

    @app.route("/login", methods=["GET"])
    @counted("dashboard_login")
    def get_login(self, request: IRequest) -> bytes:
        """The sign-in form (public: it shows nothing of the cluster)."""
        return self._login_form(request, "")

    @app.route("/login", methods=["POST"])
    @counted("dashboard_login")
    async def post_login(self, request: IRequest) -> bytes:
        """Sign in with an operator's name and password, or the cluster key."""
        try:
            await self.dashboard_sessions.sign_in(request)
        except (Unauthorized, Forbidden) as exc:
            log.warn("dashboard sign-in refused: {reason}", reason=str(exc),
                     event="dashboard_login_failed")
            request.setResponseCode(401 if isinstance(exc, Unauthorized) else 403)
            return self._login_form(request, str(exc))
        return _redirect(request, b"/")

    @app.route("/logout", methods=["POST"])
    @counted("dashboard_logout")
    async def post_logout(self, request: IRequest) -> bytes:
        """End the dashboard session (the form carries its CSRF token)."""
        await self.dashboard_sessions.sign_out(request)
        return _redirect(request, b"/login")

    @app.route("/dashboard/state", methods=["GET"])
    @counted("dashboard_state")
    async def get_dashboard_state(self, request: IRequest) -> bytes:
        """What the dashboard shows, as JSON (a session or the cluster key)."""
        await self.dashboard_sessions.require(request)
        request.setHeader(b"Cache-Control", b"no-store")
        return write_json(request, await dashboard_state(self))

    @app.route("/dashboard/<name>", methods=["GET"])
    def get_dashboard_file(self, request: IRequest, name: str) -> bytes:
        """The page's stylesheet and script (public: code, no data)."""
        kind = STATIC_TYPES.get(name)
        if kind is None:
            raise NotFound("no such file")
        request.setHeader(b"Content-Type", kind)
        return static_file(name)

    def _login_form(self, request: IRequest, message: str) -> bytes:
        token = self.dashboard_sessions.login_form_token(request)
        return _html(request, page("login.html", csrf=token, message=message))

    # -- peers ---------------------------------------------------------------
    @app.route("/peers/register", methods=["POST"])
    @counted("peers_register")
    @cluster_key_required
    async def register_peer(self, request: IRequest) -> bytes:
        """A prism or store registers (or refreshes) its address."""
        address = parse_registration(self._body(request))
        record = await self.peers.register(address)
        log.info("peer {name} registered ({role} at {url})", name=record["name"],
                 role=record["role"], url=record["url"], event="peer_registered")
        return write_json(request, record)

    @app.route("/peers", methods=["GET"])
    @counted("peers_list")
    @cluster_key_required
    async def list_peers(self, request: IRequest) -> bytes:
        """Every registered peer."""
        return write_json(request, {"peers": await self.peers.list()})

    @app.route("/peers/<name>", methods=["GET"])
    @counted("peers_get")
    @cluster_key_required
    async def get_peer(self, request: IRequest, name: str) -> bytes:
        """One peer's record."""
        return write_json(request, await self.peers.get(validate.peer_name(name)))

    @app.route("/peers/<name>/update", methods=["POST"])
    @counted("peers_update")
    @cluster_key_required
    async def update_peer(self, request: IRequest, name: str) -> bytes:
        """Set a peer's `active` and/or `writable` flags."""
        validate.peer_name(name)
        flags = parse_flags(self._body(request))
        record = await self.peers.update(name, flags)
        log.info("peer {name} flags set: {flags}", name=name, flags=flags, event="peer_updated")
        return write_json(request, record)

    @app.route("/peers/<name>/drain", methods=["POST"])
    @counted("peers_drain")
    @cluster_key_required
    async def drain_peer(self, request: IRequest, name: str) -> bytes:
        """Make a store read-only and have the planner copy what it holds elsewhere."""
        return write_json(request, await drain(self.peers, validate.peer_name(name)))

    @app.route("/peers/<name>/remove", methods=["POST"])
    @counted("peers_remove")
    @cluster_key_required
    async def remove_peer(self, request: IRequest, name: str) -> bytes:
        """Forget a peer; a store holding the only counted copy of anything only with
        `{"force": true}`."""
        validate.peer_name(name)
        if not validate.field(self._body(request), "force", bool, False):
            await check_remove(self.redis, self.keys, self.peers, name)
        await self.peers.remove(name)
        log.info("peer {name} removed", name=name, event="peer_removed")
        return write_json(request, {"removed": True})

    # -- users and sessions ------------------------------------------------------
    @app.route("/users", methods=["POST"])
    @counted("users_create")
    @cluster_key_required
    async def create_user(self, request: IRequest) -> bytes:
        """Create a user (the password is generated unless given) -> 201."""
        created = await self.users.create(self._body(request))
        log.info("user {username} created", username=created["username"], event="user_created")
        return write_json(request, created, 201)

    @app.route("/users", methods=["GET"])
    @counted("users_list")
    @cluster_key_required
    async def list_users(self, request: IRequest) -> bytes:
        """Every user, without password hashes."""
        return write_json(request, {"users": await self.users.list()})

    @app.route("/users/<username>/operator", methods=["POST"])
    @counted("users_operator")
    @cluster_key_required
    async def set_operator(self, request: IRequest, username: str) -> bytes:
        """Grant or revoke the operator flag (`{"operator": bool}`)."""
        answer = await self.users.set_operator(username, self._body(request).get("operator"))
        log.info("user {username} operator: {operator}", username=username,
                 operator=answer["operator"], event="user_operator")
        return write_json(request, answer)

    @app.route("/users/<username>/deactivate", methods=["POST"])
    @counted("users_deactivate")
    @cluster_key_required
    async def deactivate_user(self, request: IRequest, username: str) -> bytes:
        """Deactivate a user; its sessions end."""
        answer = await self.users.deactivate(username)
        log.info("user {username} deactivated", username=username, event="user_deactivated")
        return write_json(request, answer)

    @app.route("/user/login", methods=["POST"])
    @counted("user_login")
    @cluster_key_required
    async def login(self, request: IRequest) -> bytes:
        """Open a session for valid credentials."""
        session = await self.users.login(self._body(request))
        return write_json(request, {"success": "User logged in", "session": session})

    @app.route("/user/logout", methods=["POST"])
    @counted("user_logout")
    @cluster_key_required
    async def logout(self, request: IRequest) -> bytes:
        """End a session."""
        await self.users.logout(self._body(request).get("token"))
        return write_json(request, {"success": "User logged out"})

    @app.route("/user/session/validate", methods=["POST"])
    @counted("session_validate")
    @cluster_key_required
    async def validate_session(self, request: IRequest) -> bytes:
        """The live session of a token, its expiry pushed forward."""
        session = await self.users.validate(self._body(request).get("token"))
        return write_json(request, {"success": "Session valid", "session": session})

    @app.route("/user/session/update", methods=["POST"])
    @counted("session_update")
    @cluster_key_required
    async def update_session(self, request: IRequest) -> bytes:
        """Replace a session's data."""
        body = self._body(request)
        if "data" not in body:
            raise InvalidInput("missing field 'data'")
        session = await self.users.update(body.get("token"), body["data"])
        return write_json(request, {"success": "Session updated", "session": session})

    @app.route("/user/password/reset", methods=["POST"])
    @counted("password_reset")
    @cluster_key_required
    async def reset_password(self, request: IRequest) -> bytes:
        """Give the session's user a new generated password."""
        password = await self.users.reset_password(self._body(request).get("token"))
        return write_json(request, {"success": "User password reset", "password": password})

    # -- inventory -------------------------------------------------------------
    @app.route("/inventory/lookup", methods=["POST"])
    @counted("inventory_lookup")
    @cluster_key_required
    async def lookup_many(self, request: IRequest) -> bytes:
        """Rows of up to 1000 hashes."""
        hashes = self._body(request).get("hashes")
        if not isinstance(hashes, list) or len(hashes) > MAX_LOOKUP_HASHES:
            raise InvalidInput("'hashes' must be a list of at most {} hashes".format(
                MAX_LOOKUP_HASHES))
        return write_json(request, await self.inventory.lookup_many(
            [validate.sha1(h) for h in hashes]))

    @app.route("/inventory/publish", methods=["POST"])
    @counted("inventory_publish")
    @cluster_key_required
    @feed_write
    async def publish(self, request: IRequest) -> bytes:
        """Apply a store's batch of adds/removes (idempotent)."""
        body = self._body(request, max(self.max_body, PUBLISH_MAX_BYTES))
        store = validate.peer_name(body.get("store"), "store")
        changes = parse_changes(body.get("changes"))
        applied, cursor = await self.inventory.publish(store, changes)
        self.metrics.publish_rows.labels(result="applied").inc(applied)
        self.metrics.publish_rows.labels(result="unchanged").inc(len(changes) - applied)
        return write_json(request, {"applied": applied, "cursor": cursor})

    @app.route("/inventory/snapshot", methods=["GET"])
    @counted("inventory_snapshot")
    @cluster_key_required
    async def inventory_snapshot(self, request: IRequest) -> bytes:
        """NDJSON: the cursor line, then every row (taken after the cursor)."""
        cursor = await self.inventory.cursor()
        chunks = self.inventory.snapshot_chunks()
        return await stream_ndjson(request, _cursor_line(cursor), chunks.next,
                                   self._count_rows("inventory"))

    @app.route("/inventory/feed", methods=["GET"])
    @counted("inventory_feed")
    @cluster_key_required
    async def inventory_feed(self, request: IRequest) -> bytes:
        """Changes after a cursor; long-polls up to `wait` seconds; 410 when trimmed."""
        after, wait, limit = self._feed_args(request)
        cursor, changes = await self._poll(INVENTORY_FEED, request, after, wait,
                                           lambda: self.inventory.feed(after, limit))
        return write_json(request, {"cursor": cursor, "changes": changes})

    @app.route("/inventory/store/<store>", methods=["GET"])
    @counted("inventory_store")
    @cluster_key_required
    async def store_inventory(self, request: IRequest, store: str) -> bytes:
        """NDJSON: what the master believes `store` holds."""
        chunks = self.inventory.store_chunks(validate.peer_name(store, "store"))
        return await stream_ndjson(request, b"", chunks.next, self._count_rows("store"))

    @app.route("/inventory/<sha1>", methods=["GET"])
    @counted("inventory_get")
    @cluster_key_required
    async def lookup(self, request: IRequest, sha1: str) -> bytes:
        """The row of one hash; 404 when no store holds it."""
        row = await self.inventory.lookup(validate.sha1(sha1))
        if row is None:
            raise NotFound("no store holds {}".format(sha1))
        return write_json(request, row)

    # -- purchases ---------------------------------------------------------------
    @app.route("/purchases", methods=["POST"])
    @counted("purchases_create")
    @cluster_key_required
    @feed_write
    async def create_purchase(self, request: IRequest) -> bytes:
        """Create a purchase: the master draws the token and sets `expires` -> 201."""
        purchase = await self.purchases.create(self._body(request))
        return write_json(request, purchase, 201)

    @app.route("/purchases/snapshot", methods=["GET"])
    @counted("purchases_snapshot")
    @cluster_key_required
    async def purchase_snapshot(self, request: IRequest) -> bytes:
        """NDJSON: the cursor line, then every unexpired purchase."""
        cursor = await self.purchases.cursor()
        chunks = self.purchases.snapshot_chunks()
        return await stream_ndjson(request, _cursor_line(cursor), chunks.next,
                                   self._count_rows("purchases"))

    @app.route("/purchases/feed", methods=["GET"])
    @counted("purchases_feed")
    @cluster_key_required
    async def purchase_feed(self, request: IRequest) -> bytes:
        """Purchase changes after a cursor (long-poll; 410 when trimmed)."""
        after, wait, limit = self._feed_args(request)
        cursor, changes = await self._poll(PURCHASE_FEED, request, after, wait,
                                           lambda: self.purchases.feed(after, limit))
        return write_json(request, {"cursor": cursor, "changes": changes})

    @app.route("/purchases/prune", methods=["POST"])
    @counted("purchases_prune")
    @cluster_key_required
    @feed_write
    async def prune_purchases(self, request: IRequest) -> bytes:
        """Remove every expired purchase now, each announced on the feed."""
        pruned = await self.purchases.prune()
        self.record_prune(pruned)
        return write_json(request, {"pruned": pruned})

    @app.route("/purchases/<token>", methods=["GET"])
    @counted("purchases_get")
    @cluster_key_required
    async def get_purchase(self, request: IRequest, token: str) -> bytes:
        """One purchase; 404 when unknown, expired or not `?owner=`'s."""
        owner = validate.query_arg(request, "owner")
        purchase = await self.purchases.get(validate.token(token), _owner(owner))
        if purchase is None:
            raise NotFound("purchase not found")
        return write_json(request, purchase)

    @app.route("/purchases/<token>/remove", methods=["POST"])
    @counted("purchases_remove")
    @cluster_key_required
    @feed_write
    async def remove_purchase(self, request: IRequest, token: str) -> bytes:
        """Remove a purchase: count 1 when it existed (and was `owner`'s if named), else 0."""
        validate.token(token)
        owner = _owner(self._body(request).get("owner"))
        count = await self.purchases.remove(token, owner)
        return write_json(request, {"token": token, "count": count})

    # -- helpers ---------------------------------------------------------------
    async def feed_cursors(self) -> dict[str, str]:
        """The cursors of both feeds now, by mirror kind (for the mirrors' lag)."""
        return {"inventory": await self.inventory.cursor(),
                "purchases": await self.purchases.cursor()}

    def record_prune(self, pruned: int) -> None:
        """Count one prune run (route or periodic job)."""
        self.metrics.prune_runs.inc()
        self.metrics.purchases_pruned.inc(pruned)

    def _count_rows(self, kind: str) -> Callable[[bytes], None]:
        counter = self.metrics.snapshot_rows.labels(kind=kind)
        return lambda chunk: counter.inc(chunk.count(b"\n"))

    def _feed_args(self, request: IRequest) -> tuple[str, float, int]:
        after = validate.query_arg(request, "after")
        if after is None:
            raise InvalidInput("missing query argument 'after' (a feed cursor)")
        timeout = self.config.master.feed_poll_timeout
        wait = validate.query_number(request, "wait", 0.0, 0.0, 3600.0)
        limit = validate.query_number(request, "limit", FEED_MAX_LIMIT, 1, FEED_MAX_LIMIT)
        if limit != int(limit):
            raise InvalidInput("'limit' must be a whole number")
        return validate.cursor(after), min(wait, timeout), int(limit)

    async def drain(self) -> None:
        """Refuse feed writes, then wait (at most DRAIN_MAX_SECONDS) until every follower
        has asked for each feed past its last change; called when the master stops."""
        self.draining = True
        self.readiness.block("draining", "the master is shutting down")
        deadline = self.clock.seconds() + DRAIN_MAX_SECONDS
        behind: list[str] = []
        while self.followers:
            if not self.writes_in_flight:
                try:
                    behind = (self.followers.behind(INVENTORY_FEED, await self.inventory.cursor())
                              + self.followers.behind(PURCHASE_FEED,
                                                      await self.purchases.cursor()))
                except Exception as exc:  # noqa: BLE001 - no Redis: nothing to wait for
                    log.warn("stopping without draining the feeds: {error}", error=str(exc))
                    return
                if not behind:
                    return
            if self.clock.seconds() >= deadline:
                log.warn("stopping while feed followers are behind: {readers}",
                         readers=", ".join(sorted(set(behind))) or "writes in flight")
                return
            await deferLater(self.clock, DRAIN_CHECK_SECONDS)

    async def _poll(self, feed: str, request: IRequest, after: str, wait: float,
                    read: Callable[[], Any]) -> tuple[str, list[dict[str, Any]]]:
        reader = validate.query_arg(request, "reader")
        if reader is None:
            return await self._long_poll(feed, wait, read)
        reader = validate.peer_name(reader, "reader")
        self.followers.reading(feed, reader, after)
        try:
            page = await self._long_poll(feed, wait, read)
        except CancelledError:
            self.followers.gone(feed, reader)
            raise
        finally:
            self.followers.answered(feed, reader)
        return page

    async def _long_poll(self, feed: str, wait: float,
                         read: Callable[[], Any]) -> tuple[str, list[dict[str, Any]]]:
        pages: list[tuple[str, list[dict[str, Any]]]] = []

        async def read_page() -> Any:
            cursor, changes = await read()
            pages.append((cursor, changes))
            return _Page(cursor, changes)

        started = self.clock.seconds()
        await long_poll(self.waiters, feed, wait, read_page)
        if len(pages) > 1:
            woke = "changed" if pages[-1][1] else "timeout"
            self.metrics.feed_waits.labels(feed=feed, outcome=woke).inc()
            self.metrics.feed_wait_seconds.labels(feed=feed).observe(
                max(0.0, self.clock.seconds() - started))
        return pages[-1]


class _Page:
    """What `long_poll` needs to know of a read: whether it had entries."""

    def __init__(self, cursor: str, entries: list[Any]) -> None:
        self.cursor = cursor
        self.entries = entries


def _owner(value: Any) -> str | None:
    """The owner a purchase route is asked on behalf of (a user name), or None."""
    return None if value is None else validate.username(value)


def _html(request: IRequest, body: bytes) -> bytes:
    """An HTML answer that is never cached, framed, or allowed to load foreign code."""
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Security-Policy",
                      b"default-src 'self'; frame-ancestors 'none'; form-action 'self'")
    request.setHeader(b"X-Frame-Options", b"DENY")
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    return body


def _redirect(request: IRequest, location: bytes) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"Location", location)
    request.setHeader(b"Cache-Control", b"no-store")
    return b""


def _cursor_line(cursor: str) -> bytes:
    return b'{"cursor":"' + cursor.encode("ascii") + b'"}\n'
