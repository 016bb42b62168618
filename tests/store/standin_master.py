"""A stand-in master speaking only the inventory routes a store uses.

`POST /inventory/publish` and `GET /inventory/store/<store>` exactly as in
docs/master-api.md, plus `GET /_standin/state` for tests.  Used by the
store's end-to-end tests and by bench/store_bench.py, so neither depends on
the real master's progress.  Run alone:

    python -m tests.store.standin_master --port 8160 --key KEY [--rows rows.ndjson --store store1]
"""

from __future__ import annotations

import argparse
import hmac
import json
from typing import Any

from twisted.internet.task import cooperate
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

ROWS_PER_WRITE = 2000


class StandinMaster(Resource):
    """Inventory routes backed by dicts; records every publish."""

    isLeaf = True

    def __init__(self, cluster_key: str) -> None:
        super().__init__()
        self._key = ("Bearer " + cluster_key).encode()
        self.rows: dict[str, dict[str, tuple[str, int]]] = {}
        self.batches: list[dict[str, Any]] = []
        self.listed = 0
        self.applied = 0  # effective changes so far: the feed cursor

    def load(self, store: str, path: str) -> int:
        """Load `{"hash","ext","size"}` rows of `store` from an NDJSON file."""
        held = self.rows.setdefault(store, {})
        with open(path, "rb") as handle:
            for line in handle:
                row = json.loads(line)
                held[row["hash"]] = (row["ext"], row["size"])
        return len(held)

    def render(self, request: Any) -> Any:
        """Dispatch."""
        path = request.path.decode()
        if path == "/_standin/state":
            return self._json(request, {"batches": self.batches, "listed": self.listed,
                                        "counts": {k: len(v) for k, v in self.rows.items()}})
        if path == "/health":
            return self._json(request, {"status": "ok"})
        auth = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(auth, self._key):
            return self._json(request, {"error": "cluster key required"}, 401)
        if path == "/inventory/publish" and request.method == b"POST":
            return self._publish(request)
        if path.startswith("/inventory/store/") and request.method == b"GET":
            return self._stream(request, path[len("/inventory/store/"):])
        return self._json(request, {"error": "not found"}, 404)

    def _json(self, request: Any, body: Any, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()

    def _publish(self, request: Any) -> bytes:
        body = json.loads(request.content.read())
        store, changes = body["store"], body["changes"]
        held = self.rows.setdefault(store, {})
        applied = 0
        for change in changes:
            if change["op"] == "add":
                applied += held.get(change["hash"]) != (change["ext"], change["size"])
                held[change["hash"]] = (change["ext"], change["size"])
            else:
                applied += held.pop(change["hash"], None) is not None
        self.applied += applied
        self.batches.append({"store": store, "count": len(changes), "listed": self.listed,
                             "changes": changes[:50]})
        return self._json(request, {"applied": applied, "cursor": str(self.applied)})

    def _stream(self, request: Any, store: str) -> Any:
        self.listed += 1
        request.setHeader(b"Content-Type", b"application/x-ndjson")
        items = list(self.rows.get(store, {}).items())

        def produce() -> Any:
            for start in range(0, len(items), ROWS_PER_WRITE):
                request.write(b"".join(
                    json.dumps({"hash": h, "ext": e, "size": s}).encode() + b"\n"
                    for h, (e, s) in items[start:start + ROWS_PER_WRITE]))
                yield None
            request.finish()

        cooperate(produce())
        return NOT_DONE_YET


def main() -> None:
    """Serve a stand-in master until killed."""
    from twisted.internet import reactor
    from twisted.web.server import Site

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rows")
    parser.add_argument("--store", default="store1")
    args = parser.parse_args()
    master = StandinMaster(args.key)
    if args.rows:
        master.load(args.store, args.rows)
    reactor.listenTCP(args.port, Site(master), interface="127.0.0.1")
    print("standin master listening on {}".format(args.port), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
