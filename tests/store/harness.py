"""In-memory store for unit tests: real files in a temp dir, fake master, Clock."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from stretchfs.errors import PeerUnavailable
from tests.helpers import CLUSTER_KEY, load_test_config, result_of

AUTH = {b"Authorization": [b"Bearer " + CLUSTER_KEY.encode()]}


def direct(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`run_blocking` for tests: call at once, answer with a fired Deferred."""
    return maybeDeferred(function, *args, **kwargs)


def sha1_of(data: bytes) -> str:
    """Hex SHA1 of `data`."""
    return hashlib.sha1(data).hexdigest()


class FakeMaster:
    """Duck-typed MasterClient: records publishes, holds a per-store inventory."""

    def __init__(self) -> None:
        self.down = False
        self.batches: list[tuple[str, list[dict[str, Any]]]] = []
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.listed = 0
        self.applied = 0  # effective changes so far: the feed cursor

    async def publish(self, store: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply a batch (PeerUnavailable while `down`)."""
        if self.down:
            raise PeerUnavailable("master unreachable")
        self.batches.append((store, [dict(c) for c in changes]))
        held = self.rows.setdefault(store, {})
        applied = 0
        for change in changes:
            if change["op"] == "add":
                row = {"hash": change["hash"], "ext": change["ext"], "size": change["size"]}
                applied += held.get(change["hash"]) != row
                held[change["hash"]] = row
            else:
                applied += held.pop(change["hash"], None) is not None
        self.applied += applied
        return {"applied": applied, "cursor": str(self.applied)}

    async def store_inventory(self, store: str, on_row: Callable[[Any], None]) -> int:
        """Stream what this fake believes `store` holds."""
        if self.down:
            raise PeerUnavailable("master unreachable")
        self.listed += 1
        rows = list(self.rows.get(store, {}).values())
        for row in rows:
            on_row(row)
        return len(rows)

    def changes(self) -> list[dict[str, Any]]:
        """Every published change in order."""
        return [c for _, batch in self.batches for c in batch]


def store_config(tmp_path: Any, extra: str = "", name: str = "store1",
                 store: dict[str, Any] | None = None) -> Any:
    """A store config rooted in `tmp_path/<name>`, `[store]` keys replaced by `store`."""
    from dataclasses import replace

    config = load_test_config("store", root=str(tmp_path / name), name=name, extra=extra)
    if store:
        config = replace(config, store=replace(config.store, **store))
    return config


def build(tmp_path: Any, clock: Any, *, master: FakeMaster | None = None, extra: str = "",
          http: Any = None, peers: Any = None, name: str = "store1",
          store: dict[str, Any] | None = None) -> Any:
    """Build and start a store service (without its listener) on `clock`."""
    from stretchfs.store.service import build_store_service
    from stretchfs.web.listen import ListeningService
    from tests.fakes import FakeRedisStore

    config = store_config(tmp_path, extra, name, store)
    service = build_store_service(config, reactor=clock, redis=FakeRedisStore(clock), http=http,
                                  udp=False, peers=peers, master=master or FakeMaster(),
                                  run_blocking=direct)
    service.config = config
    for child in service:
        if not isinstance(child, ListeningService):
            child.startService()
    return service


def stop(service: Any) -> None:
    """Stop every started child."""
    from stretchfs.web.listen import ListeningService

    for child in reversed(list(service)):
        if not isinstance(child, ListeningService) and child.running:
            result_of(maybeDeferred(child.stopService))


def stub_for(service: Any) -> Any:
    """StubTreq on the store's root whose Site uses the streaming request class."""
    from treq.testing import StubTreq

    stub = StubTreq(service.root_resource)
    stub._agent._serverFactory.requestFactory = service.request_factory
    return stub


def request(stub: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    """One in-memory request: (status, headers, body)."""
    response = _settle(stub, stub.request(method, "http://store1" + path, **kwargs))
    return response.code, response.headers, _settle(stub, stub.content(response))


def _settle(stub: Any, d: Any) -> Any:
    """Pump the in-memory connection until `d` fires (producers write in steps)."""
    fired: list[Any] = []
    d.addBoth(lambda r: fired.append(True) or r)
    for _ in range(10_000):
        if fired:
            break
        stub.flush()
    return result_of(d)


def raw_channel(service: Any, clock: Any = None) -> tuple[Any, StringTransport]:
    """An HTTPChannel of the store's Site on a StringTransport (for partial bodies).

    Its timers (linger after a refusal) run on `clock` when given.
    """
    site = Site(service.root_resource, reactor=clock)
    site.requestFactory = service.request_factory
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def put_head(sha1: str, ext: str, length: int, key: str = CLUSTER_KEY,
             extra: str = "") -> bytes:
    """The request head of a raw PUT (`extra`: more header lines, each ending in CRLF)."""
    return ("PUT /content/put/{}.{} HTTP/1.1\r\nHost: store1\r\nAuthorization: Bearer {}\r\n"
            "Content-Length: {}\r\n{}\r\n").format(sha1, ext, key, length, extra).encode()


def files_under(folder: str) -> list[str]:
    """Every regular file below `folder` (relative paths, sorted)."""
    found = []
    for base, _, names in os.walk(folder):
        for name in names:
            found.append(os.path.relpath(os.path.join(base, name), folder))
    return sorted(found)
