"""A store refusing a PUT over real loopback HTTP: the prism's client gets the 4xx/5xx
answer (not a connection error), quickly, and the store keeps nothing."""

from __future__ import annotations

import hashlib
import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.server import Site

from stretchfs.errors import UpstreamError
from stretchfs.wire import store as client_module
from stretchfs.wire.http import make_http_client
from stretchfs.wire.store import StoreClient
from tests.helpers import CLUSTER_KEY
from tests.store.harness import build, files_under, stop

BODY = os.urandom(4 * 1024 * 1024)
SHA1 = hashlib.sha1(BODY).hexdigest()


@pytest.mark.parametrize("limits, expected", [({"max_put": 1024 * 1024}, 413),
                                              ({"min_free": 10**18}, 507)])
@pytest_twisted.ensureDeferred
async def test_refused_put_reaches_the_sending_client(tmp_path, clock, monkeypatch, limits,
                                                      expected: int) -> None:
    """The store answers while the body is still being sent; the client reads that answer."""
    service = build(tmp_path, clock, store=limits)
    site = Site(service.root_resource, reactor=reactor)
    site.requestFactory = service.request_factory
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    source = tmp_path / "body.bin"
    source.write_bytes(BODY)
    client = StoreClient(make_http_client(reactor, persistent=False),
                         "http://127.0.0.1:{}".format(port.getHost().port), CLUSTER_KEY,
                         timeout=30, clock=reactor)
    producers = []
    original_init = client_module.FileProducer.__init__

    def recording_init(producer, *args, **kwargs):
        original_init(producer, *args, **kwargs)
        producers.append(producer)

    monkeypatch.setattr(client_module.FileProducer, "__init__", recording_init)
    try:
        with pytest.raises(UpstreamError) as raised:
            await client.put(SHA1, "bin", str(source), len(BODY))
    finally:
        await port.stopListening()
        stop(service)
    assert raised.value.code == expected
    # The answer came before the whole body: the client stopped reading the file, which
    # put() closes on its way out.
    assert len(producers) == 1 and not producers[0].sending
    root = service.config.store.root
    assert files_under(os.path.join(root, "content")) == []
    assert files_under(os.path.join(root, "tmp")) == []


@pytest_twisted.ensureDeferred
async def test_store_stalling_its_put_reply_is_given_up(tmp_path) -> None:
    """A store that sends its reply headers and then nothing more does not hang the PUT:
    it fails as unavailable after the client's idle timeout."""
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET

    from stretchfs.errors import PeerUnavailable

    class _Stalling(Resource):
        isLeaf = True

        def render_PUT(self, request):
            request.content.read()
            request.setResponseCode(201)
            request.setHeader(b"Content-Length", b"100")
            request.write(b'{"hash": ')
            return NOT_DONE_YET

    port = reactor.listenTCP(0, Site(_Stalling()), interface="127.0.0.1")
    source = tmp_path / "small.bin"
    source.write_bytes(b"abc")
    client = StoreClient(make_http_client(reactor, persistent=False),
                         "http://127.0.0.1:{}".format(port.getHost().port), CLUSTER_KEY,
                         timeout=0.3, clock=reactor)
    try:
        with pytest.raises(PeerUnavailable):
            await client.put(hashlib.sha1(b"abc").hexdigest(), "bin", str(source), 3)
    finally:
        await port.stopListening()
