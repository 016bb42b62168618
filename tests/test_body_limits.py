"""Oversized request bodies are refused without being stored."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from klein import Klein

from stretchfs.errors import PayloadTooLarge
from stretchfs.web.errormap import install_error_handlers
from stretchfs.web.jsonio import read_body, read_json_object, write_json
from stretchfs.web.limits import LimitedRequest


class _Site:
    max_body = 1000


class _Channel:
    site = _Site()


def _request() -> LimitedRequest:
    request = LimitedRequest.__new__(LimitedRequest)
    request.channel = _Channel()
    request.content = None
    return request


def test_declared_length_over_the_limit_stores_nothing() -> None:
    """A Content-Length over max_body is refused before any byte is stored."""
    request = _request()
    request.gotLength(10**9)
    request.handleContentChunk(b"x" * 5000)
    assert request.body_too_large
    assert request.content.getvalue() == b""
    with pytest.raises(PayloadTooLarge):
        read_body(request, 10**9)


def test_chunked_body_is_cut_off_once_past_the_limit() -> None:
    """Without a Content-Length, storing stops as soon as the body passes max_body."""
    request = _request()
    request.gotLength(None)
    for _ in range(5):
        request.handleContentChunk(b"y" * 300)
    assert request.body_too_large
    assert request.content.getvalue() == b""


def test_body_within_the_limit_is_kept() -> None:
    """A body under max_body is stored as usual."""
    request = _request()
    request.gotLength(None)
    request.handleContentChunk(b'{"a": 1}')
    assert not request.body_too_large
    request.content.seek(0)
    assert request.content.read() == b'{"a": 1}'


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
    from twisted.internet import reactor

    from stretchfs.roles import http_service

    service = http_service(reactor, "tcp:0:interface=127.0.0.1", _Echo().app.resource(),
                           "test", max_body=1000)
    service.startService()
    address = await service.ready
    try:
        url = "http://127.0.0.1:{}/echo".format(address.port)
        small = await treq.post(url, data=b'{"a": 1}')
        assert small.code == 200 and json.loads(await small.content()) == {"a": 1}
        big = await treq.post(url, data=b'{"a": "' + b"z" * 100_000 + b'"}')
        assert big.code == 413
        assert "error" in json.loads(await big.content())
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_client_stops_reading_a_reply_past_its_cap() -> None:
    """read_capped refuses a chunked reply once it passes the cap, without buffering it all."""
    from twisted.internet import reactor

    from stretchfs.errors import UpstreamError
    from stretchfs.httpclient import make_http_client, read_capped
    from stretchfs.roles import http_service

    class _Big:
        app = Klein()

        @app.route("/big")
        def big(self, request):
            for _ in range(50):
                request.write(b"b" * 10_000)  # no Content-Length: chunked
            request.finish()

    service = http_service(reactor, "tcp:0:interface=127.0.0.1", _Big().app.resource(),
                           "test", max_body=1000)
    service.startService()
    address = await service.ready
    http = make_http_client(reactor, persistent=False)
    try:
        url = "http://127.0.0.1:{}/big".format(address.port)
        assert len(await read_capped(await http.get(url), 1_000_000)) == 500_000
        with pytest.raises(UpstreamError):
            await read_capped(await http.get(url), 50_000)
    finally:
        await service.stopService()
