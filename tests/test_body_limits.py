"""Oversized request bodies are refused without being stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from klein import Klein

from stretchfs.web import limits
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.jsonio import read_json_object, write_json
from tests.helpers import raw_http


async def _echo_server(max_body: int = 1000) -> tuple[Any, int]:
    from twisted.internet import reactor

    from stretchfs.roles import http_services

    [service] = http_services(reactor, ["tcp:0:interface=127.0.0.1"], _Echo().app.resource(),
                              "test", max_body=max_body,
                              request_factory=limits.limited_request(linger_seconds=0.3),
                              linger_seconds=0.3)
    service.startService()
    address = await service.ready
    return service, address.port


@pytest_twisted.ensureDeferred
async def test_declared_length_over_the_limit_is_answered_before_the_body() -> None:
    """A Content-Length over max_body gets 413 at once (no 100 Continue), then the close."""
    from twisted.internet.threads import deferToThread

    service, port = await _echo_server()
    try:
        head = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                b"Expect: 100-continue\r\n\r\n")
        seen = await deferToThread(raw_http, port, head)
        assert seen.reply.startswith(b"HTTP/1.1 413 "), seen.reply[:80]
        assert b"100 Continue" not in seen.reply
        assert b"larger than 1000 bytes" in seen.reply
        assert seen.closed
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_chunked_body_is_refused_once_past_the_limit() -> None:
    """Without a Content-Length, a body is answered 413 as soon as it passes max_body."""
    from twisted.internet.threads import deferToThread

    service, port = await _echo_server()
    try:
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(2000))
        seen = await deferToThread(raw_http, port, head, body, chunk=310)
        assert seen.reply.startswith(b"HTTP/1.1 413 "), seen.reply[:80]
        assert seen.closed
    finally:
        await service.stopService()


def test_chunked_body_is_answered_as_soon_as_it_passes_the_limit() -> None:
    """The 413 goes out with the chunk that crosses max_body, not at the end of the body."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from stretchfs.roles import QuietSite

    site = QuietSite(_Echo().app.resource(), reactor=Clock())
    site.requestFactory = limits.LimitedRequest
    site.max_body = 1000
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent = 0
    for _ in range(100):
        channel.dataReceived(b"%x\r\n%s\r\n" % (300, b"y" * 300))
        sent += 300
        if transport.value():
            break
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert sent == 1200  # the fourth chunk crossed 1000 bytes


class _Echo:
    app = Klein()
    install_error_handlers(app)

    @app.route("/echo", methods=["POST"])
    def echo(self, request):
        return write_json(request, read_json_object(request, 10**9))


@pytest_twisted.ensureDeferred
async def test_real_server_answers_413_to_a_huge_body() -> None:
    """Over real HTTP, a body past the site's limit gets 413 even if the route allows more."""
    import treq


    service, port = await _echo_server()
    try:
        url = "http://127.0.0.1:{}/echo".format(port)
        small = await treq.post(url, data=b'{"a": 1}')
        assert small.code == 200 and json.loads(await small.content()) == {"a": 1}
        big = await treq.post(url, data=b'{"a": "' + b"z" * 100_000 + b'"}')
        assert big.code == 413
        assert "error" in json.loads(await big.content())
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_client_stops_reading_a_reply_past_its_cap() -> None:
    """Deadline.read refuses a chunked reply once it passes the cap, without buffering it all."""
    from twisted.internet import reactor

    from stretchfs.errors import UpstreamError
    from stretchfs.roles import http_services
    from stretchfs.wire.http import Deadline, make_http_client

    class _Big:
        app = Klein()

        @app.route("/big")
        def big(self, request):
            for _ in range(50):
                request.write(b"b" * 10_000)  # no Content-Length: chunked
            request.finish()

    [service] = http_services(reactor, ["tcp:0:interface=127.0.0.1"], _Big().app.resource(),
                              "test", max_body=1000)
    service.startService()
    address = await service.ready
    http = make_http_client(reactor, persistent=False)
    try:
        url = "http://127.0.0.1:{}/big".format(address.port)
        with Deadline(reactor, 10.0, url) as deadline:
            assert len(await deadline.read(await http.get(url), 1_000_000)) == 500_000
            with pytest.raises(UpstreamError):
                await deadline.read(await http.get(url), 50_000)
    finally:
        await service.stopService()


@pytest.mark.parametrize("head,status", [
    (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414 URI Too Long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
     b"431 Request Header Fields Too Large"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"c" * 1000) for i in range(20)) + b"\r\n",
     b"431 Request Header Fields Too Large"),
])
@pytest_twisted.ensureDeferred
async def test_an_oversized_request_head_is_answered_before_the_close(
        head: bytes, status: bytes) -> None:
    """A 100 KB URL gets 414, too large headers 431, each with a JSON body, then the close."""
    from twisted.internet.threads import deferToThread

    service, port = await _echo_server()
    try:
        seen = await deferToThread(raw_http, port, head)
        assert seen.reply.startswith(b"HTTP/1.1 " + status + b"\r\n"), seen.reply[:80]
        reply_head, _, body = seen.reply.partition(b"\r\n\r\n")
        assert b"\r\nConnection: close" in reply_head
        assert "larger than" in json.loads(body)["error"]
        assert seen.closed
    finally:
        await service.stopService()
