"""The streaming upload Request: bodies go to temp files as they arrive."""

from __future__ import annotations

import hashlib
import os

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed

from stretchfs.errors import Unauthorized
from stretchfs.prism.upload import MultipartUpload, UploadOpener
from stretchfs.web.intake import Backpressure, Watermarks
from stretchfs.web.limits import limited_request
from tests.helpers import result_of
from tests.prism.harness import make_prism, multipart, sha1_of
from tests.test_intake import HeldExecutor, Producer


def _upload(ctype: str, tmp_path, max_bytes: int, run=maybeDeferred,
            flow: Backpressure | None = None) -> MultipartUpload:
    """A MultipartUpload hashing and writing on `run` (inline by default)."""
    return MultipartUpload(ctype, str(tmp_path), max_bytes, run=run,
                           flow=flow or Backpressure(Producer(), Watermarks()))


def test_streaming_request_hands_finished_parts_to_the_handler(tmp_path) -> None:
    """Through the streaming request the handler gets parsed parts and the body is never
    buffered."""
    prism = make_prism(tmp_path)
    seen = []
    api = prism.service.api
    original = api.replicator.store

    async def spy(sha1, ext, path, size):
        with open(path, "rb") as handle:
            seen.append(hashlib.sha1(handle.read()).hexdigest())
        return await original(sha1, ext, path, size)

    api.replicator.store = spy
    client = prism.client
    data = os.urandom(300_000)
    body, ctype = multipart({"f": "v"}, {"file": ("a.bin", "", data)})
    d = client.request("POST", "http://prism/content/upload", data=body,
                       headers={"Content-Type": [ctype], "X-STRETCHFS-Token": ["s" * 64]})
    prism.pump()
    response = result_of(d)
    answer = result_of(response.json())
    assert response.code == 200, answer
    assert answer["files"]["file"]["sha1"] == sha1_of(data) == seen[0]
    assert answer["data"] == {"f": "v"}
    assert os.listdir(api.config.prism.tmp_dir) == []
    prism.stop()


def test_streaming_upload_with_bad_session_writes_nothing(tmp_path) -> None:
    """A refused session at header time makes the parser drop the body (no temp file)."""
    upload = _upload("multipart/form-data; boundary=XyZzY0123", tmp_path, 10**6)
    upload.fail(Unauthorized("invalid session"))
    body, _ = multipart({}, {"file": ("a.bin", "", b"x" * 1000)})
    upload.write(body)
    assert os.listdir(tmp_path) == []
    try:
        upload.finish()
    except Unauthorized:
        pass
    else:
        raise AssertionError("expected Unauthorized")


def test_parser_writes_parts_in_small_chunks(tmp_path) -> None:
    """Feeding a body byte-chunk by chunk gives the same parts and hashes."""
    data = os.urandom(100_000)
    body, ctype = multipart({"a": "1"}, {"file": ("x.mp4", "video/mp4", data)})
    upload = _upload(ctype, tmp_path, 10**6)
    for start in range(0, len(body), 997):
        upload.write(body[start:start + 997])
    upload.finish()
    assert upload.fields == {"a": "1"}
    [part] = upload.files
    assert part.sha1 == sha1_of(data) and part.size == len(data)
    assert part.mimetype == "video/mp4" and part.filename == "x.mp4"
    with open(part.path, "rb") as handle:
        assert handle.read() == data
    upload.cleanup()
    assert os.listdir(tmp_path) == []


def _upload_channel(tmp_path, check_session, max_bytes: int = 10**9, clock=None):
    """A prism HTTPChannel streaming uploads into `tmp_path`, on a StringTransport;
    its timers (linger after a refusal) run on `clock`."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    site = Site(Resource(), reactor=clock or Clock())
    site.requestFactory = limited_request(UploadOpener(str(tmp_path), max_bytes, check_session,
                                                       run=maybeDeferred), linger_seconds=10)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def _upload_head(ctype: str, length: int | None, extra: str = "") -> bytes:
    """The head of a raw upload request (chunked when `length` is None)."""
    framing = ("Transfer-Encoding: chunked" if length is None
               else "Content-Length: {}".format(length))
    return ("POST /content/upload HTTP/1.1\r\nHost: prism\r\nContent-Type: {}\r\n{}\r\n"
            "{}\r\n").format(ctype, framing, extra).encode()


def test_connection_lost_mid_upload_removes_temp_files(tmp_path) -> None:
    """A client that disconnects mid-part leaves no temp file behind."""
    from twisted.python.failure import Failure

    channel, _ = _upload_channel(tmp_path, lambda token: succeed({}))
    body, ctype = multipart({}, {"file": ("a.bin", "", b"y" * 200_000)})
    channel.dataReceived(_upload_head(ctype, len(body), "X-STRETCHFS-Token: {}\r\n".format(
        "s" * 64)) + body[:100_000])
    assert len(os.listdir(tmp_path)) == 1
    channel.connectionLost(Failure(ConnectionError("gone")))
    assert os.listdir(tmp_path) == []


def test_refused_session_stops_disk_writes(tmp_path) -> None:
    """When the session check fails at header time, the body never reaches the disk."""
    channel, _ = _upload_channel(tmp_path, lambda token: fail(Unauthorized("invalid session")))
    body, ctype = multipart({}, {"file": ("a.bin", "", b"y" * 200_000)})
    channel.dataReceived(_upload_head(ctype, len(body)) + body[:100_000])
    assert os.listdir(tmp_path) == []


def test_session_refused_mid_body_is_answered_at_once(tmp_path) -> None:
    """A session the master refuses while the body streams in is answered 401 then and
    there (one answer), the rest of the body is dropped and the connection closes at its end."""
    verdict: Deferred = Deferred()
    channel, transport = _upload_channel(tmp_path, lambda token: verdict)
    body, ctype = multipart({}, {"file": ("a.bin", "", b"y" * 200_000)})
    channel.dataReceived(_upload_head(ctype, len(body)) + body[:100_000])
    assert transport.value() == b""
    verdict.errback(Unauthorized("invalid session"))
    assert transport.value().startswith(b"HTTP/1.1 401 ")
    assert b"invalid session" in transport.value()
    channel.dataReceived(body[100_000:])
    assert transport.disconnecting
    assert transport.value().count(b"HTTP/1.1 ") == 1
    assert os.listdir(tmp_path) == []


def test_session_refused_after_the_client_left_is_ignored(tmp_path) -> None:
    """A session verdict arriving after the connection was lost answers nothing, raises
    nothing, and leaves no temp file."""
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    verdict: Deferred = Deferred()
    channel, transport = _upload_channel(tmp_path, lambda token: verdict)
    body, ctype = multipart({}, {"file": ("a.bin", "", b"y" * 200_000)})
    channel.dataReceived(_upload_head(ctype, len(body)) + body[:100_000])
    channel.connectionLost(Failure(ConnectionLost()))
    verdict.errback(Unauthorized("invalid session"))
    outcome: list = []
    verdict.addBoth(outcome.append)
    assert outcome == [None]  # handled: no error left in the Deferred
    assert transport.value() == b""
    assert os.listdir(tmp_path) == []


def test_refused_session_after_the_body_leaves_no_temp_file(tmp_path) -> None:
    """An upload whose session the master refuses is answered 401 and its temp files go."""
    prism = make_prism(tmp_path)
    api = prism.service.api
    client = prism.client
    body, ctype = multipart({}, {"file": ("a.bin", "", b"z" * 100_000)})
    d = client.request("POST", "http://prism/content/upload", data=body,
                       headers={"Content-Type": [ctype], "X-STRETCHFS-Token": ["u" * 64]})
    prism.pump()
    client.flush()
    assert result_of(d).code == 401
    assert os.listdir(api.config.prism.tmp_dir) == []
    assert sum(s.puts for s in prism.stores.values()) == 0
    prism.stop()


def test_declared_oversize_upload_is_refused_before_the_body(tmp_path) -> None:
    """A Content-Length beyond max_upload gets 413 at once; the connection closes after
    the linger time (the body that still comes is dropped)."""
    from twisted.internet.task import Clock

    clock = Clock()
    channel, transport = _upload_channel(tmp_path, lambda token: succeed({}), 1000, clock)
    channel.dataReceived(_upload_head("multipart/form-data; boundary=x", 10**9))
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert b"larger than 1000 bytes" in transport.value()
    channel.dataReceived(b"--x\r\n" + b"z" * 100_000)
    assert not transport.disconnecting
    clock.advance(10)
    assert transport.disconnecting
    assert os.listdir(tmp_path) == []


def test_parts_are_hashed_and_written_in_order_with_back_pressure(tmp_path) -> None:
    """Blocks are hashed and written in order off the reactor; too much queued pauses reading."""
    from twisted.internet.defer import Deferred

    run = HeldExecutor()
    producer = Producer()
    events = producer.events
    upload = _upload("multipart/form-data; boundary=XyZzY0123", tmp_path, 10**9, run,
                     Backpressure(producer, Watermarks()))
    data = os.urandom(40 * 1024 * 1024)
    body, _ = multipart({}, {"file": ("big.bin", "", data)})
    for start in range(0, len(body), 65536):
        upload.write(body[start:start + 65536])
    assert set(events) == {"pause"}
    events.clear()
    d = Deferred.fromCoroutine(upload.complete())
    assert not d.called
    run.drain()
    result_of(d)
    assert events == ["resume"]
    [part] = upload.files
    assert part.sha1 == sha1_of(data) and part.size == len(data)
    with open(part.path, "rb") as handle:
        assert handle.read() == data
    upload.cleanup()
    assert os.listdir(tmp_path) == []


def test_a_failed_upload_drops_its_file_once_queued_blocks_finish(tmp_path) -> None:
    """A failed upload with blocks still queued leaves no temp file once they finish."""
    run = HeldExecutor()
    upload = _upload("multipart/form-data; boundary=XyZzY0123", tmp_path, 10**9, run)
    body, _ = multipart({}, {"file": ("big.bin", "", os.urandom(3 * 1024 * 1024))})
    upload.write(body[: len(body) // 2])
    upload.fail(Unauthorized("invalid session"))
    run.drain()
    upload.cleanup()
    assert os.listdir(tmp_path) == []


def test_endless_part_header_is_refused_not_buffered(tmp_path) -> None:
    """Part headers that never end are refused (400) once past 64 KiB, instead of the
    parser holding them in memory without bound."""
    from stretchfs.errors import InvalidInput
    from stretchfs.prism.multipart import MAX_HEADER_BYTES

    upload = _upload("multipart/form-data; boundary=XyZzY0123", tmp_path, 10**9)
    upload.write(b"--XyZzY0123\r\nContent-Disposition: form-data; name=\"file\"; filename=\"")
    fed = 0
    for _ in range(1000):
        if upload.error is not None:
            break
        upload.write(b"a" * 16384)
        fed += 16384
    assert isinstance(upload.error, InvalidInput)
    assert fed <= MAX_HEADER_BYTES + 16384
    assert os.listdir(tmp_path) == []


def test_chunked_upload_past_the_total_limit_is_refused_mid_body(tmp_path) -> None:
    """Without a Content-Length, an upload is answered 413 once its body passes the limit
    for a whole upload, and its temp files go."""
    channel, transport = _upload_channel(tmp_path, lambda token: succeed({}), 1000)
    _, ctype = multipart({}, {"file": ("a.bin", "", b"q" * 900)})
    channel.dataReceived(_upload_head(ctype, None))
    sent = 0
    chunk = b"x" * 65536
    for _ in range(100):
        if transport.value():
            break
        channel.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert sent <= 1000 + 1024 * 1024 + 64 * 1024 + len(chunk)
    assert os.listdir(tmp_path) == []


def _parsed(tmp_path, body: bytes, ctype: str, chunk: int = 65536) -> MultipartUpload:
    upload = _upload(ctype, tmp_path, 10**9)
    for offset in range(0, len(body), chunk):
        upload.write(body[offset:offset + chunk])
    return upload


def test_one_form_field_is_capped_at_64_kib(tmp_path) -> None:
    """A single field over 64 KiB is refused (413) whatever the read size, naming it."""
    import pytest

    from stretchfs.errors import PayloadTooLarge
    from stretchfs.prism.upload import MAX_FIELD_BYTES

    body, ctype = multipart({"note": "n" * (MAX_FIELD_BYTES + 1)}, {"file": ("a", "", b"x")})
    upload = _parsed(tmp_path, body, ctype, chunk=len(body))
    with pytest.raises(PayloadTooLarge, match="note"):
        upload.finish()


def test_body_cut_inside_a_trailing_field_is_refused(tmp_path) -> None:
    """A body that ends inside a form field (no closing boundary) is 400, not a success
    that silently drops the field."""
    import pytest

    from stretchfs.errors import InvalidInput

    body, ctype = multipart({"note": "hello"}, {"file": ("a.bin", "", b"x" * 100)})
    cut = body.index(b"hello") + 3
    reordered = body[body.index(b"--XyZzY0123\r\nContent-Disposition: form-data; name=\"file\""):]
    reordered = reordered.replace(b"--XyZzY0123--\r\n", b"") + body[:cut]
    upload = _parsed(tmp_path, reordered, ctype)
    with pytest.raises(InvalidInput, match="inside a part"):
        upload.finish()


def test_empty_file_input_is_a_field_not_a_file(tmp_path) -> None:
    """A browser's empty file input (filename="") is no file part and writes nothing."""
    body, ctype = multipart({}, {"file": ("", "application/octet-stream", b""),
                                 "real": ("a.bin", "", b"data")})
    upload = _parsed(tmp_path, body, ctype)
    upload.finish()
    assert [part.field for part in upload.files] == ["real"]
    assert upload.fields.get("file") == ""


def _counting_run(calls: list):
    def run(function, *args):
        calls.append(function)
        return maybeDeferred(function, *args)
    return run


def test_a_small_file_part_stays_in_memory_without_a_thread_trip(tmp_path) -> None:
    """A file part within SMALL_PART_BYTES is hashed on the spot and kept in memory: no
    temp file, no trip to the thread pool; what is sent is its bytes."""
    calls: list = []
    data = os.urandom(4096)
    body, ctype = multipart({"note": "n"}, {"file": ("a.bin", "", data)})
    upload = _upload(ctype.split("; ", 1)[0] + "; boundary=XyZzY0123", tmp_path, 10**9,
                     _counting_run(calls))
    for offset in range(0, len(body), 1000):
        upload.write(body[offset:offset + 1000])
    result_of(Deferred.fromCoroutine(upload.complete()))
    [part] = upload.files
    assert part.sha1 == sha1_of(data) and part.size == len(data) and part.source == data
    assert part.path == "" and calls == [] and os.listdir(tmp_path) == []
    upload.cleanup()


def test_a_file_part_outgrowing_memory_goes_to_a_temp_file_whole(tmp_path) -> None:
    """Past SMALL_PART_BYTES (or SMALL_PARTS_BYTES for the whole request) a file part
    moves to a temp file with every byte so far, hashed on the thread pool."""
    from stretchfs.prism.upload import SMALL_PART_BYTES, SMALL_PARTS_BYTES

    big = os.urandom(SMALL_PART_BYTES + 1)
    smalls = {"s{}".format(n): ("s{}.bin".format(n), "", os.urandom(SMALL_PART_BYTES // 2))
              for n in range(SMALL_PARTS_BYTES // (SMALL_PART_BYTES // 2) + 2)}
    body, ctype = multipart({}, {"big": ("b.bin", "", big), **smalls})
    calls: list = []
    upload = _upload(ctype, tmp_path, 10**9, _counting_run(calls))
    for offset in range(0, len(body), 4096):
        upload.write(body[offset:offset + 4096])
    result_of(Deferred.fromCoroutine(upload.complete()))
    parts = {part.field: part for part in upload.files}
    assert parts["big"].path and parts["big"].data is None and calls
    with open(parts["big"].path, "rb") as handle:
        assert handle.read() == big
    assert parts["big"].sha1 == sha1_of(big)
    on_disk = [name for name, part in parts.items() if part.path]
    in_memory = [name for name, part in parts.items() if part.data is not None]
    assert "s0" in in_memory and on_disk[-1] == "s{}".format(len(smalls) - 1)
    assert sum(parts[name].size for name in in_memory) <= SMALL_PARTS_BYTES
    for name, part in parts.items():
        assert part.sha1 == sha1_of(big if name == "big" else smalls[name][2])
    upload.cleanup()
    assert os.listdir(tmp_path) == []


def test_a_field_fed_one_byte_at_a_time_is_kept_whole_then_capped(tmp_path) -> None:
    """A 64 KiB field arriving a byte per read is kept whole (its size is counted as it
    grows, not re-summed per read: that took ~53 s of reactor CPU), a byte more is 413."""
    import pytest

    from stretchfs.errors import PayloadTooLarge
    from stretchfs.prism.upload import MAX_FIELD_BYTES

    for size, fits in ((MAX_FIELD_BYTES, True), (MAX_FIELD_BYTES + 1, False)):
        body, ctype = multipart({"note": "n" * size}, {"file": ("a", "", b"x")})
        upload = _parsed(tmp_path, body, ctype, chunk=1)
        if fits:
            upload.finish()
            assert upload.fields["note"] == "n" * size
        else:
            with pytest.raises(PayloadTooLarge, match="note"):
                upload.finish()
        upload.cleanup()
