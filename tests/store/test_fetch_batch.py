"""Batched repair copies (`/content/fetch-batch`, `/content/download-batch`) and their
wire client, against real stores in memory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.wire.batchframes import MAX_BATCH_ITEMS, BatchEntry, encode_entry, parse_entries
from stretchfs.wire.http import make_http_client
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY, SilentPeer
from tests.store.harness import AUTH, _settle, build, request, sha1_of, stop, stub_for
from tests.store.test_fetch_contract import _Http, pair

FILES = [b"small file %d " % n * (n + 1) for n in range(5)]
HASHES = [sha1_of(data) for data in FILES]
JSON_AUTH = {**AUTH, b"Content-Type": [b"application/json"]}


def test_a_batch_copies_each_file_once_and_publishes_them_in_one_append(tmp_path,
                                                                       clock) -> None:
    """fetch_batch copies every item (SHA1 checked, on disk, published in one journal
    batch), reports a hash the source lacks as missing, and a second batch is a no-op."""
    source, target, stub, master, client = pair(tmp_path, clock, FILES)
    absent = sha1_of(b"nowhere")
    items = [{"hash": h, "ext": None} for h in HASHES] + [{"hash": absent}]
    answer = _settle(stub, Deferred.fromCoroutine(client.fetch_batch("store1", items)))
    statuses = {h: v["status"] for h, v in answer["items"].items()}
    assert statuses == dict({h: "copied" for h in HASHES}, **{absent: "missing"})
    assert answer["items"][HASHES[2]] == {"status": "copied", "ext": "bin",
                                          "size": len(FILES[2])}
    for sha1, data in zip(HASHES, FILES):
        with open(target.content.store.path_for(sha1, "bin"), "rb") as handle:
            assert handle.read() == data
    assert sorted(c["hash"] for c in master.changes()) == sorted(HASHES)
    assert len(master.batches) == 1
    again = _settle(stub, Deferred.fromCoroutine(client.fetch_batch("store1", items[:2])))
    assert {v["status"] for v in again["items"].values()} == {"existed"}
    assert len(master.changes()) == len(HASHES)
    stop(source)
    stop(target)


def test_bytes_that_do_not_match_their_hash_are_discarded(tmp_path, clock) -> None:
    """A source whose file no longer matches its hash: that item is `corrupt` and not
    kept or published; the other items are copied."""
    source, target, stub, master, client = pair(tmp_path, clock, FILES)
    with open(source.content.store.path_for(HASHES[0], "bin"), "r+b") as handle:
        handle.write(b"X")
    answer = _settle(stub, Deferred.fromCoroutine(client.fetch_batch(
        "store1", [{"hash": h} for h in HASHES[:3]])))
    assert answer["items"][HASHES[0]] == {"status": "corrupt"}
    assert [answer["items"][h]["status"] for h in HASHES[1:3]] == ["copied", "copied"]
    assert target.content.store.find(HASHES[0]) is None
    assert sorted(c["hash"] for c in master.changes()) == sorted(HASHES[1:3])
    stop(source)
    stop(target)


@pytest.mark.parametrize("body, message", [
    (b"{not json", "JSON"),
    (json.dumps({"from": "store1", "items": []}).encode(), "non-empty list"),
    (json.dumps({"from": "store1", "items": [{"hash": "ABC"}]}).encode(), "40 lowercase"),
    (json.dumps({"from": "store1", "items": [{"hash": HASHES[0], "ext": "B!N"}]}).encode(),
     "ext"),
    (json.dumps({"from": "store1", "items": [{"hash": HASHES[0]}] * 2}).encode(), "twice"),
    (json.dumps({"from": "store1", "items": [{"hash": "%040x" % n}
                                              for n in range(MAX_BATCH_ITEMS + 1)]}).encode(),
     "at most"),
    (json.dumps({"from": 7, "items": [{"hash": HASHES[0]}]}).encode(), "from must name"),
])
def test_bad_fetch_batch_input_is_a_400_that_changes_nothing(tmp_path, clock, body,
                                                             message) -> None:
    """Malformed JSON, no items, bad hashes or ext, a repeated hash, too many items or no
    source: 400 naming the problem, nothing copied or published."""
    source, target, stub, master, _ = pair(tmp_path, clock, FILES)
    code, _, answer = request(stub, "POST", "/content/fetch-batch", data=body,
                              headers=JSON_AUTH)
    assert code == 400 and message in json.loads(answer)["error"]
    assert master.changes() == [] and target.content.store.find(HASHES[0]) is None
    stop(source)
    stop(target)


def test_fetch_batch_needs_the_key_and_a_known_store(tmp_path, clock) -> None:
    """Without the cluster key 401; an unknown source 404."""
    source, target, stub, _, _ = pair(tmp_path, clock, FILES)
    body = json.dumps({"from": "store9", "items": [{"hash": HASHES[0]}]}).encode()
    assert request(stub, "POST", "/content/fetch-batch", data=body)[0] == 401
    assert request(stub, "POST", "/content/fetch-batch", data=body, headers=JSON_AUTH)[0] == 404
    stop(source)
    stop(target)


def test_download_batch_frames_each_file_and_refuses_bad_input(tmp_path, clock) -> None:
    """The source answers each hash framed (missing ones marked); bad hashes are a 400,
    files adding up to more than a batch's bytes a 413."""
    source, target, _, _, _ = pair(tmp_path, clock, FILES)
    stub = stub_for(source)
    absent = sha1_of(b"nowhere")
    code, _, body = request(stub, "POST", "/content/download-batch", headers=JSON_AUTH,
                            data=json.dumps({"hashes": [HASHES[1], absent]}).encode())
    assert code == 200
    assert parse_entries(body) == [BatchEntry(HASHES[1], "bin", FILES[1]),
                                   BatchEntry(absent, "", None)]
    for bad in ({"hashes": "x"}, {"hashes": ["0" * 39]}, {"hashes": [HASHES[0]] * 2}):
        assert request(stub, "POST", "/content/download-batch", headers=JSON_AUTH,
                       data=json.dumps(bad).encode())[0] == 400
    big = source.content.store
    from stretchfs.wire import batchframes
    huge = b"z" * (batchframes.MAX_BATCH_BYTES // 2 + 1)
    for n in range(2):
        data = huge + bytes([n])
        assert request(stub, "PUT", "/content/put/{}.bin".format(sha1_of(data)), data=data,
                       headers=AUTH)[0] == 201
    code, _, body = request(stub, "POST", "/content/download-batch", headers=JSON_AUTH,
                            data=json.dumps({"hashes": [sha1_of(huge + b"\0"),
                                                        sha1_of(huge + b"\1")]}).encode())
    assert code == 413 and big.find(HASHES[0]) is not None
    stop(source)
    stop(target)


def test_frames_round_trip_and_malformed_bodies_are_refused() -> None:
    """Entries encode and parse back; a cut body, a header without end or size, or more
    entries than asked for are ValueErrors."""
    entries = [BatchEntry(HASHES[0], "bin", FILES[0]), BatchEntry(HASHES[1], "", None),
               BatchEntry(HASHES[2], "txt", b"")]
    body = b"".join(encode_entry(e) for e in entries)
    assert parse_entries(body) == entries
    for bad in (body[:-1], b"x" * 2000, b'{"hash": "a", "ext": "bin"}\n', b"[1]\n"):
        with pytest.raises(ValueError):
            parse_entries(bad)
    with pytest.raises(ValueError):
        parse_entries(body, max_items=2)


def test_a_refused_download_batch_is_an_upstream_error(tmp_path, clock) -> None:
    """download_batch of a bad hash fails as UpstreamError 400 (the source's answer)."""
    source = build(tmp_path, clock)
    client = StoreClient(_Http(stub_for(source)), "http://store1", CLUSTER_KEY, 10.0, clock)
    failures: list[Any] = []
    d = Deferred.fromCoroutine(client.download_batch(["0" * 39]))
    d.addErrback(failures.append)
    assert failures and failures[0].check(UpstreamError) and failures[0].value.code == 400
    stop(source)


@pytest.mark.parametrize("call", ["download_batch", "fetch_batch"])
def test_batch_calls_to_a_silent_store_give_up_after_their_timeout(call) -> None:
    """download_batch (the client's timeout) and fetch_batch (the timeout passed, a
    batch's deadline) fail as PeerUnavailable against a store that accepts and says
    nothing, and drop the connection."""
    clock = MemoryReactorClock()
    client = StoreClient(make_http_client(clock), "http://127.0.0.1:1", CLUSTER_KEY, 5.0,
                         clock)
    d = Deferred.fromCoroutine(client.download_batch(HASHES[:2]) if call == "download_batch"
                               else client.fetch_batch("store1", [{"hash": HASHES[0]}],
                                                       timeout=30.0))
    peer = SilentPeer(clock).accept()
    limit = 5.0 if call == "download_batch" else 30.0
    clock.advance(limit - 0.1)
    assert not d.called
    clock.advance(0.2)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(PeerUnavailable) and peer.dropped
    assert clock.getDelayedCalls() == []
