"""PUT /content/put/<sha1>.<ext>: streamed, verified, atomic, published."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.helpers import CLUSTER_KEY
from tests.store.harness import (
    AUTH,
    FakeMaster,
    build,
    files_under,
    put_head,
    raw_channel,
    request,
    sha1_of,
    stop,
    stub_for,
)

DATA = b"hello stretchfs\n" * 1000
SHA1 = sha1_of(DATA)


def _root(service):
    return service.config.store.root


def _nothing_stored(service) -> bool:
    root = _root(service)
    return (files_under(os.path.join(root, "content")) == []
            and files_under(os.path.join(root, "tmp")) == [] and service.publisher.backlog == 0)


def test_put_stores_file_and_publishes_add(tmp_path, clock) -> None:
    """A PUT with the right SHA1 answers 201, lands at content/ab/cd/<sha1>.<ext>, is published."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    code, _, body = request(stub_for(service), "PUT", "/content/put/{}.txt".format(SHA1),
                            data=DATA, headers=AUTH)
    assert code == 201
    assert json.loads(body) == {"hash": SHA1, "sha1": SHA1, "ext": "txt", "size": len(DATA),
                                "existed": False}
    path = os.path.join(_root(service), "content", SHA1[:2], SHA1[2:4], SHA1 + ".txt")
    with open(path, "rb") as handle:
        assert handle.read() == DATA
    assert master.changes() == [{"op": "add", "hash": SHA1, "ext": "txt", "size": len(DATA)}]
    assert files_under(os.path.join(_root(service), "tmp")) == []
    stop(service)
    assert clock.getDelayedCalls() == []


def test_put_streams_into_temp_file_before_the_body_is_complete(tmp_path, clock) -> None:
    """Half a body is already in a temp file under <root>/tmp, not buffered in memory."""
    service = build(tmp_path, clock)
    channel, _ = raw_channel(service)
    channel.dataReceived(put_head(SHA1, "txt", len(DATA)) + DATA[:8000])
    temps = files_under(os.path.join(_root(service), "tmp"))
    assert len(temps) == 1
    channel.dataReceived(DATA[8000:])
    assert files_under(os.path.join(_root(service), "tmp")) == []
    assert os.path.exists(os.path.join(_root(service), "content", SHA1[:2], SHA1[2:4],
                                       SHA1 + ".txt"))


def test_closed_connection_mid_body_leaves_no_file_and_no_inventory(tmp_path, clock) -> None:
    """A client that disconnects mid-upload leaves no temp file, no content, no publish."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    channel, transport = raw_channel(service)
    channel.dataReceived(put_head(SHA1, "txt", len(DATA)) + DATA[:5000])
    assert len(files_under(os.path.join(_root(service), "tmp"))) == 1
    channel.connectionLost(Failure(ConnectionDone()))
    assert files_under(os.path.join(_root(service), "tmp")) == []
    assert files_under(os.path.join(_root(service), "content")) == []
    assert master.changes() == []
    assert service.publisher.backlog == 0
    assert transport.value() == b""


def test_sha1_mismatch_is_refused_and_nothing_kept(tmp_path, clock) -> None:
    """A body whose SHA1 differs from the name answers 400 and keeps no file."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    code, _, body = request(stub_for(service), "PUT", "/content/put/{}.txt".format(SHA1),
                            data=DATA + b"x", headers=AUTH)
    assert code == 400
    assert "SHA1 mismatch" in json.loads(body)["error"]
    assert files_under(os.path.join(_root(service), "content")) == []
    assert files_under(os.path.join(_root(service), "tmp")) == []
    assert master.changes() == []


BAD_NAMES = [
    SHA1.upper() + ".txt",
    SHA1[:39] + ".txt",
    SHA1 + "0.txt",
    SHA1 + ".TXT",
    SHA1 + ".toolongextension",
    SHA1 + ".t-t",
    SHA1,
    "../" + SHA1 + ".txt",
    "..%2F" + SHA1 + ".txt",
    SHA1[:2] + "%2F" + SHA1 + ".txt",
    "%2Fetc%2Fpasswd",
    SHA1 + ".txt%00",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_with_nothing_written(tmp_path, clock, name: str) -> None:
    """Malformed hashes/extensions and traversal attempts answer 4xx and write nothing."""
    service = build(tmp_path, clock)
    code, _, body = request(stub_for(service), "PUT", "/content/put/" + name, data=DATA,
                            headers=AUTH)
    assert code in (400, 404)
    assert "error" in json.loads(body)
    assert _nothing_stored(service)


@pytest.mark.parametrize("headers", [{}, {b"Authorization": [b"Bearer wrong-key-0123456789"]},
                                     {b"Authorization": [b"Basic " + CLUSTER_KEY.encode()]}])
def test_put_without_the_cluster_key_is_401(tmp_path, clock, headers) -> None:
    """A PUT without (or with a wrong) cluster key answers 401 and writes nothing."""
    service = build(tmp_path, clock)
    code, _, body = request(stub_for(service), "PUT", "/content/put/{}.txt".format(SHA1),
                            data=DATA, headers=headers)
    assert code == 401
    assert json.loads(body)["error"]
    assert _nothing_stored(service)


def test_body_over_max_put_is_413_before_the_body(tmp_path, clock) -> None:
    """A Content-Length above [store] max_put is answered 413 from the headers alone; the
    body that still comes is dropped and the connection closes once it has ended."""
    service = build(tmp_path, clock, store={"max_put": 100})
    channel, transport = raw_channel(service, clock)
    channel.dataReceived(put_head(SHA1, "txt", len(DATA)))
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in transport.value()
    channel.dataReceived(DATA[:5000])
    assert not transport.disconnecting
    channel.dataReceived(DATA[5000:])
    assert transport.disconnecting
    assert transport.producer is None  # a paused channel cannot keep the socket open
    assert transport.value().count(b"HTTP/1.1 ") == 1
    assert _nothing_stored(service)


@pytest.mark.parametrize("case", ["wrong key", "bad name", "too large"])
def test_refused_put_sends_no_100_continue(tmp_path, clock, case: str) -> None:
    """A client asking `Expect: 100-continue` gets the refusal instead of an invitation."""
    service = build(tmp_path, clock, store={"max_put": 100 if case == "too large" else 10**9})
    channel, transport = raw_channel(service, clock)
    sha1 = "not-a-hash" if case == "bad name" else SHA1
    key = "wrong" if case == "wrong key" else CLUSTER_KEY
    channel.dataReceived(put_head(sha1, "txt", len(DATA), key, "Expect: 100-continue\r\n"))
    expected = {"wrong key": b"401", "bad name": b"400", "too large": b"413"}[case]
    assert transport.value().startswith(b"HTTP/1.1 " + expected + b" ")
    assert b"100 Continue" not in transport.value()
    assert _nothing_stored(service)


def test_refused_put_closes_after_the_linger_time(tmp_path, clock) -> None:
    """A client that keeps sending the body of a refused PUT is cut off after LINGER_SECONDS."""
    from stretchfs.web.limits import LINGER_SECONDS

    service = build(tmp_path, clock, store={"max_put": 100})
    channel, transport = raw_channel(service, clock)
    channel.dataReceived(put_head(SHA1, "txt", len(DATA)) + DATA[:5000])
    clock.advance(LINGER_SECONDS - 0.5)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert _nothing_stored(service)


def test_accepted_put_still_gets_100_continue(tmp_path, clock) -> None:
    """`Expect: 100-continue` on an acceptable PUT is answered 100, then 201."""
    service = build(tmp_path, clock)
    channel, transport = raw_channel(service, clock)
    channel.dataReceived(put_head(SHA1, "txt", len(DATA), extra="Expect: 100-continue\r\n"))
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    channel.dataReceived(DATA)
    assert b"HTTP/1.1 201 " in transport.value()


def test_chunked_body_over_max_put_is_413(tmp_path, clock) -> None:
    """A chunked body that grows past max_put is refused with 413 and its temp file removed."""
    service = build(tmp_path, clock, store={"max_put": 100})
    channel, transport = raw_channel(service)
    head = ("PUT /content/put/{}.txt HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").format(SHA1, CLUSTER_KEY).encode()
    channel.dataReceived(head + b"c8\r\n" + b"a" * 200 + b"\r\n0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert _nothing_stored(service)


def test_full_disk_answers_507_and_reports_not_writable(tmp_path, clock) -> None:
    """Below min_free a PUT answers 507, nothing is written, /stat and /health say not writable."""
    service = build(tmp_path, clock, store={"min_free": 10**18})
    stub = stub_for(service)
    code, _, _ = request(stub, "PUT", "/content/put/{}.txt".format(SHA1), data=DATA,
                         headers=AUTH)
    assert code == 507
    assert files_under(os.path.join(_root(service), "content")) == []
    assert files_under(os.path.join(_root(service), "tmp")) == []
    code, _, body = request(stub, "GET", "/stat")
    assert code == 200 and json.loads(body)["writable"] is False
    code, _, body = request(stub, "GET", "/health")
    assert json.loads(body)["writable"] is False
    assert service.content.disk.writable is False


def test_concurrent_puts_of_one_hash_keep_one_file(tmp_path, clock) -> None:
    """Two interleaved PUTs of the same content both succeed and leave exactly one file."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    first, first_out = raw_channel(service)
    second, second_out = raw_channel(service)
    first.dataReceived(put_head(SHA1, "txt", len(DATA)) + DATA[:3000])
    second.dataReceived(put_head(SHA1, "txt", len(DATA)) + DATA[:7000])
    assert len(files_under(os.path.join(_root(service), "tmp"))) == 2
    second.dataReceived(DATA[7000:])
    first.dataReceived(DATA[3000:])
    assert first_out.value().startswith(b"HTTP/1.1 201 ")
    assert second_out.value().startswith(b"HTTP/1.1 201 ")
    assert b'"existed":true' in first_out.value()
    assert files_under(os.path.join(_root(service), "content")) == [
        os.path.join(SHA1[:2], SHA1[2:4], SHA1 + ".txt")]
    assert files_under(os.path.join(_root(service), "tmp")) == []


def test_put_of_a_hash_held_under_another_ext_is_a_no_op(tmp_path, clock) -> None:
    """Re-putting a held hash with another extension keeps the existing file and says so."""
    service = build(tmp_path, clock)
    stub = stub_for(service)
    request(stub, "PUT", "/content/put/{}.txt".format(SHA1), data=DATA, headers=AUTH)
    code, _, body = request(stub, "PUT", "/content/put/{}.bin".format(SHA1), data=DATA,
                            headers=AUTH)
    assert code == 201
    assert json.loads(body)["ext"] == "txt" and json.loads(body)["existed"] is True


def test_empty_body_is_stored(tmp_path, clock) -> None:
    """The empty content (SHA1 da39...) can be stored."""
    service = build(tmp_path, clock)
    empty = sha1_of(b"")
    code, _, body = request(stub_for(service), "PUT", "/content/put/{}.bin".format(empty),
                            data=b"", headers=AUTH)
    assert code == 201 and json.loads(body)["size"] == 0


def test_put_whose_caller_goes_away_after_verification_is_still_journaled(tmp_path,
                                                                          clock) -> None:
    """Cancelling a commit (client gone) while the file is being linked still finishes the
    link and the journal entry: a file on disk is never missing from the inventory."""
    from twisted.internet.defer import CancelledError, Deferred

    from tests.store.harness import direct

    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    content = service.content
    held: list[tuple[Deferred, Any, tuple]] = []

    def hold_links(function, *args, **kwargs):
        if function == content._commit_blocking:
            waiting: Deferred = Deferred()
            held.append((waiting, function, args))
            return waiting
        return direct(function, *args, **kwargs)

    content._run_blocking = hold_links
    upload = content.receiver.open(SHA1, "txt", len(DATA), StringTransport())
    upload.write(DATA)
    commit = Deferred.fromCoroutine(content.commit(upload))
    assert len(held) == 1
    commit.addErrback(lambda failure: failure.trap(CancelledError))
    commit.cancel()
    waiting, function, args = held[0]
    waiting.callback(function(*args))
    assert content.store.find(SHA1) is not None
    assert master.changes() == [{"op": "add", "hash": SHA1, "ext": "txt", "size": len(DATA)}]
