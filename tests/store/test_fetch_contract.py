"""`StoreClient.fetch` (the master's repair order) against the real store in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from stretchfs.errors import UpstreamError
from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY
from tests.store.harness import AUTH, FakeMaster, _settle, build, request, sha1_of, stop, stub_for

DATA = b"repair contract bytes" * 400
SHA1 = sha1_of(DATA)


class _Http:
    """treq-like client over a StubTreq (which takes no `reactor` argument)."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        kwargs.pop("reactor", None)
        return self.stub.request(method, url, **kwargs)


def pair(tmp_path: Any, clock: Any,
         files: list[bytes]) -> tuple[Any, Any, Any, FakeMaster, StoreClient]:
    """A source store holding `files` (as .bin) and a target store that knows it: (source,
    target, the target's stub, its master, a StoreClient of the target)."""
    source = build(tmp_path, clock)
    source_stub = stub_for(source)
    for data in files:
        assert request(source_stub, "PUT", "/content/put/{}.bin".format(sha1_of(data)),
                       data=data, headers=AUTH)[0] == 201
    peers = Peers(self_name="store2")
    peers.set_registry([PeerRecord(name="store1", role="store", host="source", port=80,
                                   ping_port=0, url="http://store1")])
    master = FakeMaster()
    target = build(tmp_path, clock, master=master, http=source_stub, name="store2",
                   peers=peers)
    target_stub = stub_for(target)
    client = StoreClient(_Http(target_stub), "http://store2", CLUSTER_KEY, 10.0, clock)
    return source, target, target_stub, master, client


def test_fetch_has_the_target_copy_from_the_source_once(tmp_path, clock) -> None:
    """fetch() makes the target copy and publish the content (201), a second fetch is a
    no-op (`existed`), and content the source lacks is an UpstreamError 404."""
    source, target, target_stub, master, client = pair(tmp_path, clock, [DATA])
    answer = _settle(target_stub, Deferred.fromCoroutine(client.fetch(SHA1, "bin", "store1")))
    assert answer["hash"] == SHA1 and answer["size"] == len(DATA) and not answer["existed"]
    assert master.changes() == [{"op": "add", "hash": SHA1, "ext": "bin", "size": len(DATA)}]
    again = _settle(target_stub, Deferred.fromCoroutine(client.fetch(SHA1, None, "store1")))
    assert again["existed"] is True
    missing = Deferred.fromCoroutine(client.fetch("0" * 40, None, "store1", timeout=5.0))
    failures: list[Any] = []
    missing.addErrback(failures.append)
    for _ in range(1000):
        if failures:
            break
        target_stub.flush()
    assert failures and failures[0].check(UpstreamError) and failures[0].value.code == 404
    stop(source)
    stop(target)
