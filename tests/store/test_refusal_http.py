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
from stretchfs.httpclient import make_http_client
from stretchfs.store.client import StoreClient
from stretchfs.store.upload import request_factory
from tests.helpers import CLUSTER_KEY
from tests.store.harness import build, files_under, stop

BODY = os.urandom(4 * 1024 * 1024)
SHA1 = hashlib.sha1(BODY).hexdigest()


@pytest.mark.parametrize("limits, expected", [({"max_put": 1024 * 1024}, 413),
                                              ({"min_free": 10**18}, 507)])
@pytest_twisted.ensureDeferred
async def test_refused_put_reaches_the_sending_client(tmp_path, clock, limits,
                                                      expected: int) -> None:
    """The store answers while the body is still being sent; the client reads that answer."""
    service = build(tmp_path, clock, store=limits)
    site = Site(service.root_resource, reactor=reactor)
    site.requestFactory = request_factory(service.content.receiver)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    source = tmp_path / "body.bin"
    source.write_bytes(BODY)
    client = StoreClient(make_http_client(reactor, persistent=False),
                         "http://127.0.0.1:{}".format(port.getHost().port), CLUSTER_KEY,
                         timeout=30, clock=reactor)
    try:
        with pytest.raises(UpstreamError) as raised:
            await client.put(SHA1, "bin", str(source), len(BODY))
    finally:
        await port.stopListening()
        stop(service)
    assert raised.value.code == expected
    root = service.config.store.root
    assert files_under(os.path.join(root, "content")) == []
    assert files_under(os.path.join(root, "tmp")) == []
