"""Signed GET/HEAD delivery: signature, expiry, Range, caching headers."""

from __future__ import annotations

import json

import pytest

from stretchfs.errors import RangeNotSatisfiable
from stretchfs.store.delivery import parse_range
from stretchfs.wire.signing import content_path, delivery_secret, signed_query
from tests.helpers import CLUSTER_KEY
from tests.store.harness import AUTH, build, raw_channel, request, sha1_of, stub_for

DATA = bytes(range(256)) * 40
SHA1 = sha1_of(DATA)
SECRET = delivery_secret(CLUSTER_KEY)


def _stored(tmp_path, clock, ext: str = "mp4"):
    service = build(tmp_path, clock)
    stub = stub_for(service)
    code, _, _ = request(stub, "PUT", "/content/put/{}.{}".format(SHA1, ext), data=DATA,
                         headers=AUTH)
    assert code == 201
    return service, stub


def _url(clock, ext: str = "mp4", life: int = 60, sha1: str = SHA1) -> str:
    path = content_path(sha1, ext)
    return "{}?{}".format(path, signed_query(SECRET, path, int(clock.seconds()) + life))


def test_signed_get_serves_the_bytes_with_headers(tmp_path, clock) -> None:
    """A valid signed URL answers 200 with the bytes, ETag, Content-Type, Accept-Ranges."""
    _, stub = _stored(tmp_path, clock)
    code, headers, body = request(stub, "GET", _url(clock))
    assert code == 200 and body == DATA
    assert headers.getRawHeaders("etag") == ['"{}"'.format(SHA1)]
    assert headers.getRawHeaders("content-type") == ["video/mp4"]
    assert headers.getRawHeaders("accept-ranges") == ["bytes"]
    assert headers.getRawHeaders("last-modified")


def test_raw_response_carries_content_length(tmp_path, clock) -> None:
    """The raw HTTP answer has Content-Length (no chunked encoding) and the bytes."""
    service, _ = _stored(tmp_path, clock)
    channel, transport = raw_channel(service)
    channel.dataReceived("GET {} HTTP/1.1\r\nHost: s\r\n\r\n".format(_url(clock)).encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nContent-Length: %d\r\n" % len(DATA) in head + b"\r\n"
    assert body == DATA


def test_client_query_args_next_to_the_signature_are_fine(tmp_path, clock) -> None:
    """Extra query args the prism keeps (start=0) do not break the signature."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock) + "&start=0")
    assert code == 200 and body == DATA


def test_head_answers_headers_only(tmp_path, clock) -> None:
    """HEAD answers 200 with Content-Length and no body."""
    service, _ = _stored(tmp_path, clock)
    channel, transport = raw_channel(service)
    channel.dataReceived("HEAD {} HTTP/1.1\r\nHost: s\r\n\r\n".format(_url(clock)).encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert b"\r\nContent-Length: %d\r\n" % len(DATA) in head + b"\r\n"


@pytest.mark.parametrize("header,first,last", [
    ("bytes=0-99", 0, 99),
    ("bytes=100-", 100, len(DATA) - 1),
    ("bytes=-10", len(DATA) - 10, len(DATA) - 1),
    ("bytes=10-999999", 10, len(DATA) - 1),
])
def test_single_range_answers_206(tmp_path, clock, header: str, first: int, last: int) -> None:
    """A satisfiable single Range answers 206 with Content-Range and just those bytes."""
    _, stub = _stored(tmp_path, clock)
    code, headers, body = request(stub, "GET", _url(clock), headers={"Range": header})
    assert code == 206
    assert body == DATA[first:last + 1]
    assert headers.getRawHeaders("content-range") == ["bytes {}-{}/{}".format(
        first, last, len(DATA))]


@pytest.mark.parametrize("header", ["bytes={}-".format(len(DATA)), "bytes=-0",
                                    "bytes=999999-1000000"])
def test_unsatisfiable_range_is_416(tmp_path, clock, header: str) -> None:
    """A Range starting past the end answers 416 with Content-Range bytes */size."""
    _, stub = _stored(tmp_path, clock)
    code, headers, body = request(stub, "GET", _url(clock), headers={"Range": header})
    assert code == 416
    assert headers.getRawHeaders("content-range") == ["bytes */{}".format(len(DATA))]
    assert json.loads(body)["error"]


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=a-b"])
def test_multi_or_malformed_range_sends_everything(tmp_path, clock, header: str) -> None:
    """Multi-range or malformed Range headers are ignored: 200 with the whole content."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock), headers={"Range": header})
    assert code == 200 and body == DATA


def test_if_range_with_another_etag_sends_everything(tmp_path, clock) -> None:
    """If-Range naming another ETag makes the Range ignored."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock),
                            headers={"Range": "bytes=0-3", "If-Range": '"other"'})
    assert code == 200 and body == DATA


def test_if_none_match_answers_304(tmp_path, clock) -> None:
    """A matching If-None-Match answers 304 without a body."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock),
                            headers={"If-None-Match": '"{}"'.format(SHA1)})
    assert code == 304 and body == b""


def test_expired_signature_is_403(tmp_path, clock) -> None:
    """A URL whose expiry has passed answers 403."""
    service, stub = _stored(tmp_path, clock)
    url = _url(clock, life=10)
    clock.advance(11)
    code, _, body = request(stub, "GET", url)
    assert code == 403 and "signature" in json.loads(body)["error"]
    assert service.content.stats.denied == 1


@pytest.mark.parametrize("mangle", [
    lambda url: url.split("?")[0],
    lambda url: url.replace("md5=", "md5=A"),
    lambda url: url.replace("expires=", "expires=9"),
    lambda url: url.replace("expires=", "expires=x"),
    lambda url: url.replace(".mp4?", ".jpg?"),
])
def test_bad_signature_is_403(tmp_path, clock, mangle) -> None:
    """A missing, altered or foreign signature answers 403 before the disk is touched."""
    _, stub = _stored(tmp_path, clock)
    code, _, _ = request(stub, "GET", mangle(_url(clock)))
    assert code == 403


def test_signed_url_for_missing_content_is_404(tmp_path, clock) -> None:
    """A valid signature for content this store lacks answers 404."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock, sha1="ab" * 20))
    assert code == 404 and json.loads(body)["error"]


def test_mismatched_folder_prefix_is_404(tmp_path, clock) -> None:
    """A path whose ab/cd folders do not match the hash answers 404."""
    _, stub = _stored(tmp_path, clock)
    bad = "/content/00/00/{}.mp4?md5=x&expires=1".format(SHA1)
    code, _, _ = request(stub, "GET", bad)
    assert code == 404


def test_bytes_served_are_counted_on_stat(tmp_path, clock) -> None:
    """/stat counts bytes served by deliveries."""
    _, stub = _stored(tmp_path, clock)
    request(stub, "GET", _url(clock), headers={"Range": "bytes=0-9"})
    request(stub, "GET", _url(clock))
    code, _, body = request(stub, "GET", "/stat")
    assert json.loads(body)["bytes_served"] == 10 + len(DATA)


def test_parse_range_rules() -> None:
    """parse_range: single ranges parsed, junk ignored, past-the-end refused."""
    assert parse_range(b"bytes=0-0", 10) == (0, 0)
    assert parse_range(b"bytes=-20", 10) == (0, 9)
    assert parse_range(b"bytes=3-", 10) == (3, 9)
    assert parse_range(b"bytes=-", 10) is None
    assert parse_range(b"bytes=1-2,4-5", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range(b"bytes=10-", 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range(b"bytes=-1", 0)


@pytest.mark.parametrize("path", [
    "/content/ab/cd/../../../etc/passwd",
    "/content/%2e%2e/%2e%2e/etc/passwd",
    "/content/ab/cd/" + SHA1 + ".mp4%2f..",
    "/content/ab%2fcd/" + SHA1 + ".mp4",
    "//etc/passwd",
    "/content/" + SHA1[:2] + "/" + SHA1[2:4] + "/" + SHA1.upper() + ".mp4",
])
def test_traversal_and_malformed_delivery_paths_are_404(tmp_path, clock, path: str) -> None:
    """Paths that are not exactly /content/ab/cd/<sha1>.<ext> never reach the disk: 404."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", path + "?md5=x&expires=9999999999")
    assert code == 404
    assert json.loads(body)["error"]


@pytest.mark.parametrize("headers, expected", [
    ({"If-None-Match": '"other", "{sha1}"'}, 304),
    ({"If-None-Match": 'W/"{sha1}"'}, 304),
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"other"', "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 200),
    ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
    ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200),
    ({"If-Modified-Since": ";x"}, 200),
    ({"If-Modified-Since": ""}, 200),
])
def test_conditional_requests(tmp_path, clock, headers, expected: int) -> None:
    """If-None-Match lists and weak tags match and win over If-Modified-Since; an
    unreadable date is ignored (200, never 500)."""
    _, stub = _stored(tmp_path, clock)
    filled = {name: value.format(sha1=SHA1) for name, value in headers.items()}
    code, _, body = request(stub, "GET", _url(clock), headers=filled)
    assert code == expected
    assert body == (DATA if expected == 200 else b"")


def test_304_has_no_content_length(tmp_path, clock) -> None:
    """A 304 carries no Content-Length (RFC 9110 8.6) and no body."""
    service, _ = _stored(tmp_path, clock)
    channel, transport = raw_channel(service)
    channel.dataReceived("GET {} HTTP/1.1\r\nHost: s\r\nIf-None-Match: \"{}\"\r\n\r\n".format(
        _url(clock), SHA1).encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304 ")
    assert b"content-length" not in head.lower() and body == b""


@pytest.mark.parametrize("signature", ["%FF%FE", "%C3%A9" * 11, "x" * 5000])
def test_non_ascii_or_oversized_signature_is_403(tmp_path, clock, signature: str) -> None:
    """A signature that is not base64 text is a plain 403, never a 500."""
    _, stub = _stored(tmp_path, clock)
    path = content_path(SHA1, "mp4")
    code, _, _ = request(stub, "GET", "{}?md5={}&expires={}".format(
        path, signature, int(clock.seconds()) + 60))
    assert code == 403


@pytest.mark.parametrize("header, expected", [
    ("bytes=" + "9" * 5000 + "-", 416),
    ("bytes=0-" + "9" * 5000, 206),
    ("bytes=-" + "9" * 5000, 206),
    ("Bytes=0-3", 206),
])
def test_absurd_range_numbers_are_answered(tmp_path, clock, header: str, expected: int) -> None:
    """Range numbers too long for any file: a start is unsatisfiable (416), an end or a
    suffix means the whole file (206); the unit is case-insensitive."""
    _, stub = _stored(tmp_path, clock)
    code, _, body = request(stub, "GET", _url(clock), headers={"Range": header})
    assert code == expected
    if header == "Bytes=0-3":
        assert body == DATA[:4]
    elif expected == 206:
        assert body == DATA


def test_file_shrinking_while_streaming_aborts_the_connection(tmp_path, clock) -> None:
    """If the file comes up short, the connection is aborted rather than finishing a
    response shorter than its Content-Length."""
    import io

    from twisted.internet.testing import StringTransport

    from stretchfs.store.delivery import FileStreamer

    class _Channel:
        transport = StringTransport()

    class _Request:
        channel = _Channel()
        finished = False
        written = b""

        def registerProducer(self, producer, streaming):  # noqa: N802
            pass

        def unregisterProducer(self):  # noqa: N802
            pass

        def write(self, data):
            self.written += data

        def finish(self):
            self.finished = True

    request = _Request()
    FileStreamer(request, io.BytesIO(b"x" * 1000), 0, 5000).start()
    assert request.written == b"x" * 1000
    assert not request.finished
    assert _Channel.transport.disconnecting


def test_content_stored_under_another_extension_is_served(tmp_path, clock) -> None:
    """A signed URL naming another extension than the one stored still gets the bytes
    (same hash, same content), typed by the extension asked for; a hash not held is 404."""
    _, stub = _stored(tmp_path, clock, ext="mp4")
    code, headers, body = request(stub, "GET", _url(clock, ext="webm"))
    assert code == 200 and body == DATA
    assert headers.getRawHeaders("content-type") == ["video/webm"]
    code, _, _ = request(stub, "GET", _url(clock, ext="webm", sha1="e" * 40))
    assert code == 404
