"""The plain-http upload path: sendfile body, answers, deadlines, kept-alive connections."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from stretchfs.client import Client, IntegrityError, Unavailable
from stretchfs.client.multipart import INLINE_BYTES, UploadBody
from stretchfs.client.rawhttp import Connection, RawResponse, TransportFailure
from tests.client.loopback import LoopbackServer, Request, answer

BOUNDARY = b"0123456789abcdef0123456789abcdef"


def _stored(request: Request) -> bytes:
    """The prism's upload answer for the file part in `request` (hash of its bytes)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    part = request.body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--" + boundary + b"--", 1)[0]
    entry = {"hash": hashlib.sha1(part).hexdigest(), "ext": "bin", "size": len(part),
             "copies": 1}
    return answer(200, json.dumps({"files": {"file": entry}}).encode(), chunked=True)


@pytest.mark.parametrize("size", [1000, INLINE_BYTES + 1, 3 * 1024 * 1024 + 17])
def test_the_sendfile_body_is_byte_for_byte_the_streamed_body(tmp_path, size) -> None:
    """pieces() through a Connection put exactly the bytes of the iterated body on the wire."""
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(b"skip" + data)
    seen: list[int] = []
    with open(path, "rb") as handle, LoopbackServer() as server:
        handle.seek(4)
        streamed = b"".join(UploadBody(handle, "f.bin", boundary=BOUNDARY,
                                       fields={"note": "hi"}))
        handle.seek(4)
        body = UploadBody(handle, "f.bin", boundary=BOUNDARY, fields={"note": "hi"},
                          progress=lambda done, total: seen.append(done))
        assert body.sendable_fd() is not None
        connection = Connection("127.0.0.1", server.port, 10.0)
        result = connection.request("POST", "/content/upload",
                                    {"Content-Type": body.headers["Content-Type"]},
                                    body.pieces())
        connection.close()
        digest = body.hexdigest()  # its thread reads the file: before the file is closed
    assert result.status_code == 200
    assert server.requests[0].body == streamed
    assert server.requests[0].headers["content-length"] == body.headers["Content-Length"]
    assert digest == hashlib.sha1(data).hexdigest()
    assert seen[-1] == size and seen == sorted(seen)


def test_a_server_that_never_reads_hits_the_deadline(tmp_path) -> None:
    """A peer that accepts and reads nothing ends a large upload after `timeout` seconds."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # more than any socket buffer holds
    with open(path, "rb") as handle, LoopbackServer(mode="silent") as server:
        body = UploadBody(handle, "big.bin")
        connection = Connection("127.0.0.1", server.port, 0.3)
        started = time.monotonic()
        with pytest.raises(TransportFailure, match="no progress"):
            connection.request("POST", "/content/upload", {}, body.pieces())
        assert time.monotonic() - started < 5


def test_a_server_that_reads_and_never_answers_hits_the_deadline() -> None:
    """A peer that takes the whole request and stays silent ends the call after `timeout`."""
    with LoopbackServer(mode="mute") as server:
        connection = Connection("127.0.0.1", server.port, 0.3)
        started = time.monotonic()
        with pytest.raises(TransportFailure):
            connection.request("POST", "/x", {}, [b"hello"])
        assert time.monotonic() - started < 5
        assert server.requests[0].body == b"hello"


def test_an_answer_sent_before_the_body_is_read_is_returned(tmp_path) -> None:
    """A 401 sent after the headers (then close) is the result, not a broken pipe."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    refusal = answer(401, b'{"error": "invalid session token"}', close=True)
    with open(path, "rb") as handle, LoopbackServer(lambda r: refusal, mode="early") as server:
        body = UploadBody(handle, "big.bin")
        result = Connection("127.0.0.1", server.port, 10.0).request(
            "POST", "/content/upload", {}, body.pieces())
    assert result.status_code == 401 and result.json() == {"error": "invalid session token"}


def test_one_connection_serves_requests_in_turn_and_reopens_when_dropped() -> None:
    """Answers (sized or chunked) keep the connection; a server-closed one is opened again."""
    replies = iter([answer(200, b'{"n": 1}'), answer(200, b'{"n": 2}', chunked=True),
                    answer(200, b'{"n": 3}'), answer(204, b"")])
    with LoopbackServer(lambda r: next(replies)) as server:
        connection = Connection("127.0.0.1", server.port, 10.0)
        assert connection.request("GET", "/a", {}).json() == {"n": 1}
        assert connection.request("GET", "/b", {}).json() == {"n": 2}
        assert server.accepted == 1
        server.keep = False
        assert connection.request("GET", "/c", {}).json() == {"n": 3}
        assert server.dropped.wait(10)
        assert connection.request("GET", "/d", {}).status_code == 204
        assert server.accepted == 2
        connection.close()


def test_a_reply_that_is_not_http_is_a_transport_failure() -> None:
    """Garbage instead of a status line is refused, and the connection is dropped."""
    with LoopbackServer(lambda r: b"SSH-2.0-OpenSSH\r\n\r\n") as server:
        connection = Connection("127.0.0.1", server.port, 10.0)
        with pytest.raises(TransportFailure, match="not an HTTP answer"):
            connection.request("GET", "/", {})


def test_a_plain_http_upload_of_a_file_goes_by_sendfile_and_is_checked(tmp_path) -> None:
    """Client.upload of a path to an http:// prism: hash checked, no httpx request made."""
    path = tmp_path / "movie.bin"
    data = os.urandom(2 * 1024 * 1024 + 3)
    path.write_bytes(data)
    with LoopbackServer(_stored) as server:
        with Client("http://127.0.0.1:{}".format(server.port), token="t" * 64) as client:
            content = client.upload(str(path))
            assert client._httpx is None
    assert content.hash == hashlib.sha1(data).hexdigest() and content.size == len(data)
    assert server.requests[0].headers["x-stretchfs-token"] == "t" * 64


def test_a_plain_http_upload_answered_with_another_hash_is_an_integrity_error(
        tmp_path) -> None:
    """The hash computed beside sendfile is compared with the stored one."""
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(INLINE_BYTES * 2))
    entry = {"hash": "f" * 40, "ext": "bin", "size": 1, "copies": 1}
    wrong = answer(200, json.dumps({"files": {"file": entry}}).encode())
    with LoopbackServer(lambda r: wrong) as server:
        with Client("http://127.0.0.1:{}".format(server.port), token="t" * 64) as client:
            with pytest.raises(IntegrityError):
                client.upload(str(path))


def test_a_503_on_the_sendfile_path_is_retried_with_the_whole_body(tmp_path) -> None:
    """A 503 is retried with backoff; the second attempt sends the same bytes again."""
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(INLINE_BYTES * 3))
    replies = iter([answer(503, b'{"error": "busy"}')])
    sleeps: list[float] = []
    with LoopbackServer(lambda r: next(replies, None) or _stored(r)) as server:
        with Client("http://127.0.0.1:{}".format(server.port), token="t" * 64,
                    sleep=sleeps.append) as client:
            client.upload(str(path))
    assert sleeps == [0.5]
    assert [len(r.body) for r in server.requests][0] == len(server.requests[1].body)
    assert server.requests[0].body.split(b"\r\n\r\n", 1)[1] == \
        server.requests[1].body.split(b"\r\n\r\n", 1)[1]


def test_a_silent_prism_makes_a_plain_http_upload_unavailable(tmp_path) -> None:
    """Through the Client, the deadline ends in Unavailable with status 0."""
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    with LoopbackServer(mode="mute") as server:
        with Client("http://127.0.0.1:{}".format(server.port), token="t" * 64, timeout=0.3,
                    retries=0) as client:
            with pytest.raises(Unavailable) as raised:
                client.upload(str(path))
    assert raised.value.status == 0


def test_raw_response_json_is_the_body() -> None:
    """RawResponse.json() decodes the body, and refuses one that is not JSON."""
    assert RawResponse(200, {}, b'{"a": 1}').json() == {"a": 1}
    with pytest.raises(ValueError):
        RawResponse(200, {}, b"<html>").json()


def test_an_interim_answer_is_skipped() -> None:
    """A 100 Continue before the answer is read past; the final answer is the result."""
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(201, b'{"ok": true}')
    with LoopbackServer(lambda r: reply) as server:
        result = Connection("127.0.0.1", server.port, 10.0).request("POST", "/", {}, [b"x"])
    assert (result.status_code, result.json()) == (201, {"ok": True})


def test_a_401_on_the_sendfile_path_logs_in_again_and_sends_again(tmp_path) -> None:
    """An expired session: the upload is refused early, the client logs in, the file goes again."""
    path = tmp_path / "a.bin"
    data = os.urandom(INLINE_BYTES * 4)
    path.write_bytes(data)
    session = {"session": {"token": "n" * 64, "expires": 0}}

    def reply(request: Request) -> bytes:
        if request.path == "/user/login":
            return answer(200, json.dumps(session).encode(), close=True)
        if request.headers["x-stretchfs-token"] != "n" * 64:
            return answer(401, b'{"error": "invalid session token"}', close=True)
        return _stored(request)

    with LoopbackServer(reply) as server:
        with Client("http://127.0.0.1:{}".format(server.port), "alice", "pw",
                    token="o" * 64) as client:
            content = client.upload(str(path))
    assert content.hash == hashlib.sha1(data).hexdigest()
    assert [r.path for r in server.requests] == ["/content/upload", "/user/login",
                                                 "/content/upload"]
    assert len(server.requests[2].body) > len(data)


def test_a_file_cut_short_while_sent_is_an_integrity_error(tmp_path) -> None:
    """A file truncated mid-upload ends the upload with IntegrityError, never retried."""
    path = tmp_path / "shrinking.bin"
    path.write_bytes(os.urandom(32 * 1024 * 1024))

    def cut(done: int, total: int | None) -> None:
        os.truncate(path, 1)

    with LoopbackServer(_stored) as server:
        with Client("http://127.0.0.1:{}".format(server.port), token="t" * 64,
                    sleep=lambda s: None) as client:
            with pytest.raises(IntegrityError, match="changed while it was sent"):
                client.upload(str(path), progress=cut)
    assert server.accepted == 1


def test_json_calls_to_a_plain_http_prism_go_over_the_same_connection() -> None:
    """Login and detail over http use the raw connection (one socket, httpx never built)."""
    record = {"hash": "a" * 40, "exists": True, "count": 2, "ext": "bin", "map": ["s1", "s2"]}
    replies = {"/user/login": {"session": {"token": "n" * 64}}, "/content/detail": record}
    with LoopbackServer(lambda r: answer(200, json.dumps(replies[r.path]).encode(),
                                         chunked=True)) as server:
        with Client("http://127.0.0.1:{}".format(server.port), "alice", "pw") as client:
            found = client.detail("a" * 40)
            assert client._httpx is None
    assert (found.count, found.stores) == (2, ("s1", "s2"))
    assert server.accepted == 1
    assert json.loads(server.requests[0].body) == {"username": "alice", "password": "pw"}
    assert server.requests[1].headers["x-stretchfs-token"] == "n" * 64
    assert json.loads(server.requests[1].body) == {"hash": "a" * 40}


def test_a_refused_connection_is_unavailable_with_status_zero() -> None:
    """Nobody listening: retried, then Unavailable (status 0) naming the prism."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # closed again when the block ends
    sleeps: list[float] = []
    with Client("http://127.0.0.1:{}".format(port), token="t" * 64, retries=1,
                sleep=sleeps.append) as client:
        with pytest.raises(Unavailable, match="cannot reach") as raised:
            client.detail("a" * 40)
    assert raised.value.status == 0 and sleeps == [0.5]


@pytest.mark.parametrize("head", [b"Content-Length: -1", b"Content-Length: 12x",
                                  b"Transfer-Encoding: chunked\r\n\r\n-1"])
def test_a_bad_length_is_a_transport_failure_not_a_read_to_the_end(head) -> None:
    """A negative or non-numeric Content-Length or chunk size is refused: it must not read
    past MAX_ANSWER_BYTES to the end of the stream, nor escape as a ValueError."""
    from stretchfs.client.rawhttp import MAX_ANSWER_BYTES

    reply = b"HTTP/1.1 200 X\r\n" + head + b"\r\n\r\n" + b"x" * (MAX_ANSWER_BYTES + 10)
    with LoopbackServer(lambda r: reply, keep=False) as server:
        connection = Connection("127.0.0.1", server.port, 10.0)
        with pytest.raises(TransportFailure, match="bad length"):
            connection.request("GET", "/", {})
