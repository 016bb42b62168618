"""In-memory fakes of the master and of stores, following their documented contracts.

`FakeMaster` implements the routes of docs/master-api.md the prism uses;
`FakeStore` the store routes of API.md (PUT, exists, remove).  `Network`
serves several of them over one StubTreq, routed by the URL's host, and can
take any host "down" (connection refused) to simulate an outage.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.web.resource import Resource

from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.wire.identifiers import is_purchase_token
from tests.helpers import CLUSTER_KEY

TOKEN = "s" * 64
OTHER_TOKEN = "o" * 64


def _json(request: Any, obj: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(obj).encode()


def _body(request: Any) -> Any:
    request.content.seek(0)
    data = request.content.read()
    return json.loads(data) if data else {}


def _authorized(request: Any) -> bool:
    return request.getHeader(b"authorization") == b"Bearer " + CLUSTER_KEY.encode()


class FakeMaster:
    """The master's internal API, in memory, with long-poll feeds on `clock`."""

    app = Klein()

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.users = {"admin": "secret", "other": "secret"}
        self.sessions: dict[str, dict[str, Any]] = {
            token: {"token": token, "username": name, "ip": "", "data": {},
                    "created": 0, "expires": clock.seconds() + 3600}
            for token, name in ((TOKEN, "admin"), (OTHER_TOKEN, "other"))}
        self.inventory: dict[str, dict[str, Any]] = {}
        self.purchases: dict[str, dict[str, Any]] = {}
        self.inv_feed: list[dict[str, Any]] = []
        self.pur_feed: list[dict[str, Any]] = []
        self.trimmed = {"inventory": 0, "purchases": 0}
        self.peers: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.published: list[tuple[str, list[dict[str, Any]]]] = []
        self._waiters: dict[str, list[Deferred[None]]] = {"inventory": [], "purchases": []}
        self.hold_snapshot: Deferred[None] | None = None

    # -- helpers for tests ----------------------------------------------------
    def add_content(self, sha1: str, ext: str, size: int, stores: list[str]) -> None:
        """Publish an inventory row as stores would."""
        for store in stores:
            self._apply_inventory({"op": "add", "hash": sha1, "store": store, "ext": ext,
                                   "size": size})

    def _apply_inventory(self, change: dict[str, Any]) -> bool:
        """Apply one store's change; whether it changed anything (as the master counts)."""
        sha1 = change["hash"]
        if change["op"] == "add":
            row = self.inventory.setdefault(sha1, {"hash": sha1, "ext": change["ext"],
                                                   "size": change["size"], "stores": []})
            if change["store"] in row["stores"]:
                return False
            row["stores"].append(change["store"])
        else:
            row = self.inventory.get(sha1)
            if not row or change["store"] not in row["stores"]:
                return False
            row["stores"].remove(change["store"])
            if not row["stores"]:
                del self.inventory[sha1]
        self.inv_feed.append(change)
        self._wake("inventory")
        return True

    def _lookup_row(self, sha1: str) -> dict[str, Any] | None:
        row = self.inventory.get(sha1)
        return None if row is None else dict(row, sha1=sha1, stores=sorted(row["stores"]))

    def add_purchase(self, sha1: str, ext: str, life: float = 3600,
                     referrer: list[str] | None = None, owner: str | None = "admin"
                     ) -> dict[str, Any]:
        """Create a purchase as the master does."""
        token = secrets.token_hex(32)
        row = {"token": token, "hash": sha1, "ext": ext, "life": life,
               "expires": self.clock.seconds() + life, "referrer": referrer or [],
               "ip": "", "owner": owner, "created": self.clock.seconds()}
        self.purchases[token] = row
        self.pur_feed.append({"op": "add", "purchase": row})
        self._wake("purchases")
        return row

    def remove_purchase_row(self, token: str) -> None:
        """Remove a purchase and announce it."""
        self.purchases.pop(token, None)
        self.pur_feed.append({"op": "remove", "token": token})
        self._wake("purchases")

    def _wake(self, kind: str) -> None:
        waiters, self._waiters[kind] = self._waiters[kind], []
        for d in waiters:
            if not d.called:
                d.callback(None)

    # -- routes -----------------------------------------------------------------
    @app.route("/peers", methods=["GET"])
    def list_peers(self, request: Any) -> bytes:
        return _json(request, {"peers": self.peers})

    @app.route("/user/login", methods=["POST"])
    def login(self, request: Any) -> bytes:
        body = _body(request)
        if self.users.get(body.get("username")) != body.get("password"):
            return _json(request, {"error": "invalid username or password"}, 401)
        token = secrets.token_hex(32)
        session = {"token": token, "username": body["username"], "ip": body.get("ip", ""),
                   "data": {}, "created": self.clock.seconds(),
                   "expires": self.clock.seconds() + 3600}
        self.sessions[token] = session
        return _json(request, {"success": "User logged in", "session": session})

    @app.route("/user/logout", methods=["POST"])
    def logout(self, request: Any) -> bytes:
        self.sessions.pop(_body(request).get("token"), None)
        return _json(request, {"success": "User logged out"})

    @app.route("/user/session/validate", methods=["POST"])
    def validate(self, request: Any) -> bytes:
        self.calls.append("validate")
        session = self.sessions.get(_body(request).get("token"))
        if session is None:
            return _json(request, {"error": "invalid session"}, 401)
        return _json(request, {"success": "Session valid", "session": session})

    @app.route("/user/session/update", methods=["POST"])
    def update(self, request: Any) -> bytes:
        body = _body(request)
        session = self.sessions.get(body.get("token"))
        if session is None:
            return _json(request, {"error": "invalid session"}, 401)
        session["data"] = body.get("data", {})
        return _json(request, {"success": "Session updated", "session": session})

    @app.route("/user/password/reset", methods=["POST"])
    def reset(self, request: Any) -> bytes:
        session = self.sessions.get(_body(request).get("token"))
        if session is None:
            return _json(request, {"error": "invalid session"}, 401)
        self.users[session["username"]] = "new-password"
        return _json(request, {"success": "User password reset", "password": "new-password"})

    @app.route("/inventory/<sha1>", methods=["GET"])
    def lookup(self, request: Any, sha1: str) -> bytes:
        self.calls.append("lookup")
        row = self._lookup_row(sha1)
        if row is None:
            return _json(request, {"error": "not found"}, 404)
        return _json(request, row)

    @app.route("/inventory/lookup", methods=["POST"])
    def lookup_many(self, request: Any) -> bytes:
        self.calls.append("lookup_many")
        return _json(request, {h: self._lookup_row(h) for h in _body(request)["hashes"]})

    @app.route("/inventory/publish", methods=["POST"])
    def publish(self, request: Any) -> bytes:
        body = _body(request)
        self.published.append((body["store"], body["changes"]))
        applied = sum(self._apply_inventory(dict(change, store=body["store"]))
                      for change in body["changes"])
        return _json(request, {"applied": applied, "cursor": str(len(self.inv_feed))})

    def _snapshot(self, request: Any, rows: list[Any], feed: list[Any]) -> Any:
        self.calls.append("snapshot")
        lines = [json.dumps({"cursor": str(len(feed))})] + [json.dumps(r) for r in rows]
        data = ("\n".join(lines) + "\n").encode()
        request.setHeader(b"Content-Type", b"application/x-ndjson")
        if self.hold_snapshot is not None:
            return self.hold_snapshot.addCallback(lambda _: data)
        return data

    @app.route("/inventory/snapshot", methods=["GET"])
    def inventory_snapshot(self, request: Any) -> Any:
        return self._snapshot(request, list(self.inventory.values()), self.inv_feed)

    @app.route("/purchases/snapshot", methods=["GET"])
    def purchase_snapshot(self, request: Any) -> Any:
        return self._snapshot(request, list(self.purchases.values()), self.pur_feed)

    def _feed(self, request: Any, kind: str, feed: list[Any], waited: bool = False) -> Any:
        after = int(request.args[b"after"][0])
        wait = 0.0 if waited else float(request.args.get(b"wait", [b"0"])[0])
        if after < self.trimmed[kind]:
            return _json(request, {"error": "cursor trimmed"}, 410)
        if after < len(feed) or wait <= 0:
            return _json(request, {"cursor": str(len(feed)), "changes": feed[after:]})
        d: Deferred[None] = Deferred()
        self._waiters[kind].append(d)
        timer = self.clock.callLater(wait, lambda: d.called or d.callback(None))
        d.addCallback(lambda _: timer.active() and timer.cancel())
        return d.addCallback(lambda _: self._feed(request, kind, feed, True))

    @app.route("/inventory/feed", methods=["GET"])
    def inventory_feed(self, request: Any) -> Any:
        return self._feed(request, "inventory", self.inv_feed)

    @app.route("/purchases/feed", methods=["GET"])
    def purchase_feed(self, request: Any) -> Any:
        return self._feed(request, "purchases", self.pur_feed)

    @app.route("/purchases", methods=["POST"])
    def create_purchase(self, request: Any) -> bytes:
        body = _body(request)
        row = self.add_purchase(body["hash"], body["ext"], body.get("life", 3600),
                                body.get("referrer"), body.get("owner"))
        row.update(ip=body.get("ip", ""))
        return _json(request, row, 201)

    @app.route("/purchases/<token>", methods=["GET"])
    def get_purchase(self, request: Any, token: str) -> bytes:
        self.calls.append("get_purchase")
        if not is_purchase_token(token):
            return _json(request, {"error": "'token' must be 64 letters or digits"}, 400)
        row = self.purchases.get(token)
        owner = request.args.get(b"owner", [None])[0]
        if row is None or row["expires"] <= self.clock.seconds() or (
                owner is not None and (row.get("owner") or "").encode() != owner):
            return _json(request, {"error": "purchase not found"}, 404)
        return _json(request, row)

    @app.route("/purchases/<token>/remove", methods=["POST"])
    def remove_purchase(self, request: Any, token: str) -> bytes:
        owner = _body(request).get("owner")
        row = self.purchases.get(token)
        if row is None or (owner is not None and row.get("owner") != owner):
            return _json(request, {"token": token, "count": 0})
        self.remove_purchase_row(token)
        return _json(request, {"token": token, "count": 1})


class FakeStore:
    """A store's content routes in memory; `mode` makes it misbehave."""

    app = Klein()

    def __init__(self, name: str) -> None:
        self.name = name
        self.files: dict[str, bytes] = {}
        self.exts: dict[str, str] = {}
        self.mode = "ok"   # ok | full | error
        self.puts = 0

    @app.route("/content/put/<name>", methods=["PUT"])
    def put(self, request: Any, name: str) -> bytes:
        if not _authorized(request):
            return _json(request, {"error": "cluster key required"}, 401)
        self.puts += 1
        if self.mode == "full":
            return _json(request, {"error": "disk full"}, 507)
        if self.mode == "error":
            return _json(request, {"error": "broken"}, 500)
        sha1, ext = name.split(".", 1)
        request.content.seek(0)
        data = request.content.read()
        if hashlib.sha1(data).hexdigest() != sha1:
            return _json(request, {"error": "sha1 mismatch"}, 409)
        self.files[sha1] = data
        self.exts[sha1] = ext
        return _json(request, {"hash": sha1, "ext": ext, "size": len(data)}, 201)

    @app.route("/content/exists", methods=["POST"])
    def exists(self, request: Any) -> bytes:
        hashes = _body(request)["hash"]
        if self.mode != "ok":
            return _json(request, {"error": "broken"}, 500)
        return _json(request, {h: {"exists": h in self.files, "ext": self.exts.get(h, "bin"),
                                   "size": len(self.files.get(h, b""))} for h in hashes})

    @app.route("/content/remove", methods=["POST"])
    def remove(self, request: Any) -> bytes:
        self.files.pop(_body(request)["hash"], None)
        return _json(request, {"success": "File removed"})


class _HostRouter(Resource):
    isLeaf = True

    def __init__(self, routes: dict[str, Any]) -> None:
        super().__init__()
        self.routes = routes

    def render(self, request: Any) -> Any:
        host = (request.getHeader(b"host") or b"").decode().split(":")[0]
        return self.routes[host].render(request)


class _Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


def _drain(producer: Any) -> bytes:
    """Run a body producer to the end (StubTreq only takes bytes)."""
    sink = _Collect()
    producer.startProducing(sink)
    return b"".join(sink.chunks)


class Network:
    """Hosts served over one StubTreq; `down` hosts refuse connections."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.down: set[str] = set()
        self.stub = StubTreq(_HostRouter(self.routes))

    def add(self, host: str, resource: Any) -> None:
        """Serve `resource` at http://<host>/."""
        self.routes[host] = resource

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        """treq's HTTPClient.request, refusing connections to down hosts."""
        host = url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        if host in self.down:
            return fail(ConnectionRefusedError("{} is down".format(host)))
        kwargs.pop("reactor", None)
        data = kwargs.get("data")
        if hasattr(data, "startProducing"):
            kwargs["data"] = _drain(data)
        return self.stub.request(method, url, **kwargs)

    def flush(self) -> None:
        """Deliver pending in-memory traffic."""
        self.stub.flush()


def store_peers(specs: list[tuple[str, str, str]], self_name: str = "prism1") -> Peers:
    """Peers with stores (name, host, zone), all active, writable, available."""
    peers = Peers(self_name=self_name)
    peers.set_registry([PeerRecord(name=name, role="store", host=host, port=80, ping_port=0,
                                   zone=zone, url="http://{}".format(host))
                        for name, host, zone in specs])
    return peers
