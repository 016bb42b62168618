"""StoreClient against the real StoreAPI in memory (the store's own contract)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from stretchfs.errors import UpstreamError
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY
from tests.prism.fakes import _drain
from tests.store.harness import _settle, build, sha1_of, stop, stub_for


class _Http:
    """treq-like client over the store's StubTreq (which only takes bytes bodies)."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        kwargs.pop("reactor", None)
        data = kwargs.get("data")
        if hasattr(data, "startProducing"):
            kwargs["data"] = _drain(data)
        return self.stub.request(method, url, **kwargs)


def _run(stub: Any, coro: Any) -> Any:
    return _settle(stub, Deferred.fromCoroutine(coro))


def test_put_exists_remove_against_the_real_store(tmp_path) -> None:
    """put() stores the bytes (201 answer), exists() sees them, remove() drops them."""
    clock = Clock()
    service = build(tmp_path, clock)
    stub = stub_for(service)
    client = StoreClient(_Http(stub), "http://store1", CLUSTER_KEY, 10.0, clock)
    data = b"contract bytes " * 1000
    path = tmp_path / "upload"
    path.write_bytes(data)
    sha1 = sha1_of(data)
    answer = _run(stub, client.put(sha1, "mp4", str(path), len(data)))
    assert answer["hash"] == sha1 and answer["size"] == len(data)
    found = _run(stub, client.exists([sha1, "0" * 40]))
    assert found[sha1]["exists"] is True and found["0" * 40]["exists"] is False
    _run(stub, client.remove(sha1))
    assert _run(stub, client.exists([sha1]))[sha1]["exists"] is False
    stop(service)


def test_put_with_a_wrong_hash_is_refused_by_the_store(tmp_path) -> None:
    """A body that does not match the hash in the URL is an UpstreamError (400/409)."""
    clock = Clock()
    service = build(tmp_path, clock)
    stub = stub_for(service)
    client = StoreClient(_Http(stub), "http://store1", CLUSTER_KEY, 10.0, clock)
    path = tmp_path / "upload"
    path.write_bytes(b"abc")
    d = Deferred.fromCoroutine(client.put("1" * 40, "bin", str(path), 3))
    failures: list[Any] = []
    d.addErrback(failures.append)
    for _ in range(100):
        if failures:
            break
        stub.flush()
    assert failures and failures[0].check(UpstreamError)
    assert failures[0].value.code in (400, 409)
    stop(service)
