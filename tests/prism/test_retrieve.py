"""Retrieve: SSRF guards, redirects, limits, and the /content/retrieve route."""

from __future__ import annotations

import pytest
import pytest_twisted
from klein import Klein
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web.client import URI

from stretchfs.errors import Forbidden, InvalidInput, PayloadTooLarge
from stretchfs.prism.retrieve import (
    Retriever,
    SafeEndpointFactory,
    address_refused,
    checked_addresses,
)
from tests.helpers import result_of
from tests.prism.harness import make_prism, sha1_of

PAYLOAD = b"remote bytes " * 500


class _Remote:
    app = Klein()

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    @app.route("/file.png")
    def file(self, request):
        self.seen.append((request.getHeader(b"host"), request.uri))
        request.setHeader(b"Content-Type", b"image/png")
        return PAYLOAD

    @app.route("/hop/<int:n>")
    def hop(self, request, n):
        request.redirect(b"/hop/%d" % (n - 1) if n > 1 else b"/file.png")
        return b""

    @app.route("/to-utf8")
    def to_utf8(self, request):
        request.redirect("/file.png?q=\u00e4".encode("utf-8"))
        return b""

    @app.route("/to-ftp")
    def to_ftp(self, request):
        request.redirect(b"ftp://remote/file.png")
        return b""

    @app.route("/missing")
    def missing(self, request):
        request.setResponseCode(404)
        return b"no"


def _failure(d: Deferred):
    failures = []
    d.addErrback(failures.append)
    assert failures, "expected a failure"
    return failures[0]


@pytest.mark.parametrize("ip,refused", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.1", True), ("172.16.5.5", True),
    ("169.254.169.254", True), ("::1", True), ("fe80::1", True), ("0.0.0.0", True),
    ("::ffff:127.0.0.1", True), ("224.0.0.1", True), ("100.64.0.1", True),
    ("93.184.216.34", False), ("2606:2800:220:1::1", False), ("not-an-ip", True)])
def test_address_classification(ip: str, refused: bool) -> None:
    """Loopback, private, link-local, shared and multicast addresses are refused."""
    assert address_refused(ip) is refused


def test_names_resolving_to_private_addresses_are_refused() -> None:
    """A host name is refused when any of its addresses is private, unless allowed."""
    async def resolve(host):
        return ["93.184.216.34", "10.0.0.1"]

    d = Deferred.fromCoroutine(checked_addresses("rebind.example", resolve, False))
    assert _failure(d).check(Forbidden)
    d = Deferred.fromCoroutine(checked_addresses("rebind.example", resolve, True))
    assert result_of(d) == ["93.184.216.34", "10.0.0.1"]
    d = Deferred.fromCoroutine(checked_addresses("127.0.0.1", resolve, False))
    assert _failure(d).check(Forbidden)


def test_endpoint_connects_only_to_the_checked_address() -> None:
    """The endpoint refuses private answers and connects to the address it checked."""
    reactor = MemoryReactorClock()
    answers = {"evil.example": ["169.254.169.254"], "good.example": ["93.184.216.34"]}

    async def resolve(host):
        return answers[host]

    factory = SafeEndpointFactory(reactor, resolve, allow_private=False)
    from twisted.internet.protocol import Factory, Protocol

    d = factory.endpointForURI(URI.fromBytes(b"http://evil.example/x")).connect(
        Factory.forProtocol(Protocol))
    assert _failure(d).check(Forbidden)
    assert reactor.tcpClients == []
    factory.endpointForURI(URI.fromBytes(b"http://good.example:8080/x")).connect(
        Factory.forProtocol(Protocol))
    assert reactor.tcpClients[0][:2] == ("93.184.216.34", 8080)
    with pytest.raises(InvalidInput):
        factory.endpointForURI(URI.fromBytes(b"ftp://good.example/x"))


def _retriever(tmp_path, max_bytes=10**6):
    agent = RequestTraversalAgent(_Remote().app.resource())
    return Retriever(agent=agent, clock=MemoryReactorClock(), max_bytes=max_bytes, timeout=30,
                     tmp_dir=str(tmp_path), run=maybeDeferred), agent


def test_fetch_follows_redirects_and_hashes(tmp_path) -> None:
    """A redirected fetch ends in a temp file with the body's SHA1 and type."""
    retriever, agent = _retriever(tmp_path)
    d = retriever.fetch("http://remote/hop/3")
    agent.flush()
    fetched = result_of(d)
    assert fetched.sha1 == sha1_of(PAYLOAD) and fetched.size == len(PAYLOAD)
    assert fetched.content_type == "image/png" and fetched.url.endswith("/file.png")


def test_fetch_limits(tmp_path) -> None:
    """Too many redirects, a non-2xx answer and an oversized body are refused."""
    retriever, agent = _retriever(tmp_path, max_bytes=100)
    d = retriever.fetch("http://remote/hop/9")
    agent.flush()
    assert _failure(d).check(InvalidInput)
    d = retriever.fetch("http://remote/missing")
    agent.flush()
    assert _failure(d).check(InvalidInput)
    d = retriever.fetch("http://remote/file.png")
    agent.flush()
    assert _failure(d).check(PayloadTooLarge)
    import os

    assert os.listdir(tmp_path) == []


def test_retrieve_route_stores_copies(tmp_path) -> None:
    """POST /content/retrieve fetches, stores and answers hash/sha1/extension/size/copies."""
    agent = RequestTraversalAgent(_Remote().app.resource())
    prism = make_prism(tmp_path, retrieve_agent=agent)
    d = prism.client.request("POST", "http://prism/content/retrieve",
                             json={"request": {"url": "http://remote/file.png"}},
                             headers={"X-STRETCHFS-Token": ["s" * 64]})
    for _ in range(5):
        agent.flush()
        prism.pump()
    response = result_of(d)
    body = result_of(response.json())
    assert response.code == 200, body
    assert body["hash"] == body["sha1"] == sha1_of(PAYLOAD)
    assert body["extension"] == "png" and body["size"] == len(PAYLOAD) and body["copies"] == 2
    prism.stop()


def test_retrieve_bad_input_is_400(tmp_path) -> None:
    """A missing URL, a non-http scheme or a bad method answer 400."""
    prism = make_prism(tmp_path)
    for body in ({}, {"url": "file:///etc/passwd"}, {"request": {"url": "gopher://x"}},
                 {"request": {"url": "http://x/", "method": "DELETE"}},
                 {"url": "http://x/", "extension": "../../"}):
        assert prism.call("POST", "/content/retrieve", body)[0] == 400, body
    prism.stop()


def _retrieve(prism, agent, body):
    d = prism.client.request("POST", "http://prism/content/retrieve", json=body,
                             headers={"X-STRETCHFS-Token": ["s" * 64]})
    for _ in range(5):
        agent.flush()
        prism.pump()
    response = result_of(d)
    return response.code, result_of(response.json())


@pytest.mark.parametrize("spec,field", [
    ({"url": "http://remote/file.png", "headers": {"X-Note": "snow \u2603"}}, "X-Note"),
    ({"url": "http://remote/file.png", "headers": {"Bad Name": "x"}}, "Bad Name"),
    ({"url": "http://remote/file.png", "headers": {"X-Note": "a\r\nX-Evil: 1"}}, "X-Note"),
    ({"url": "http://remote/file.png", "headers": {"X-Note": "a\x00b"}}, "X-Note"),
    ({"url": "http://remote/file.png\r\nX-Evil: 1"}, "url"),
    ({"url": "http://remote/fi\nle.png"}, "url"),
    ({"url": "http://remote/file .png"}, "url"),
    ({"url": "http://remote/\ud800.png"}, "url"),
    ({"url": "http://\ud800.example/file.png"}, "url"),
    ({"url": "http://remote/file.png", "headers": {"X-Note": "\ud800"}}, "X-Note"),
    ({"url": "http://remote:99999/file.png"}, "url"),
    ({"url": "http://[::1/file.png"}, "url"),
    ({"url": "http://user:secret@remote/file.png"}, "url"),
    ({"url": "http://\u2603\u2603.\u2603/file.png"}, "url"),
    ({"url": "http://xn--zz-.example/file.png"}, "url"),
    ({"url": "http://remote/file.png", "method": 7}, "method"),
])
def test_retrieve_refuses_bad_url_method_and_headers_with_400(tmp_path, spec, field) -> None:
    """A bad url, method or header answers 400 naming the field, and nothing is fetched."""
    remote = _Remote()
    agent = RequestTraversalAgent(remote.app.resource())
    prism = make_prism(tmp_path, retrieve_agent=agent)
    code, body = _retrieve(prism, agent, {"request": spec})
    assert code == 400, body
    assert field in body["error"]
    assert remote.seen == []
    prism.stop()


def test_retrieve_idna_encodes_a_non_ascii_host_and_path(tmp_path) -> None:
    """A non-ASCII host is sent IDNA-encoded and a non-ASCII path percent-encoded."""
    remote = _Remote()
    agent = RequestTraversalAgent(remote.app.resource())
    prism = make_prism(tmp_path, retrieve_agent=agent)
    code, body = _retrieve(prism, agent,
                           {"url": "http://B\u00fccher.example/file.png?q=\u00e4#frag"})
    assert code == 200, body
    assert remote.seen == [(b"xn--bcher-kva.example", b"/file.png?q=%C3%A4")]
    prism.stop()


def test_retrieve_follows_a_utf8_redirect_and_names_a_bad_one(tmp_path) -> None:
    """A UTF-8 Location is followed %-encoded; an unusable one answers 400 naming it."""
    remote = _Remote()
    agent = RequestTraversalAgent(remote.app.resource())
    prism = make_prism(tmp_path, retrieve_agent=agent)
    code, body = _retrieve(prism, agent, {"url": "http://remote/to-utf8"})
    assert code == 200, body
    assert remote.seen == [(b"remote", b"/file.png?q=%C3%A4")]
    code, body = _retrieve(prism, agent, {"url": "http://remote/to-ftp"})
    assert code == 400 and "redirect Location" in body["error"]
    prism.stop()


def test_sdk_extension_forms_are_accepted(tmp_path) -> None:
    """The SDK sends extension from path.extname(url): '', '.png' and 'png?x=1' are fine."""
    agent = RequestTraversalAgent(_Remote().app.resource())
    prism = make_prism(tmp_path, retrieve_agent=agent)
    for extension in ("", "png?x=1", ".png"):
        d = prism.client.request("POST", "http://prism/content/retrieve",
                                 json={"request": {"url": "http://remote/file.png"},
                                       "extension": extension},
                                 headers={"X-STRETCHFS-Token": ["s" * 64]})
        for _ in range(5):
            agent.flush()
            prism.pump()
        response = result_of(d)
        body = result_of(response.json())
        assert response.code == 200, body
        assert body["extension"] == "png"
    prism.stop()
    from stretchfs.prism.api import _clean_extension

    assert _clean_extension("jpg?x=1") == "jpg" and _clean_extension(".GIF") == "gif"
    assert _clean_extension("") is None and _clean_extension(None) is None


def test_fetch_timeout_drops_the_remote_connection(tmp_path) -> None:
    """A remote body still streaming when the fetch is cancelled gets its connection closed."""
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.testing import StringTransport
    from twisted.web.http_headers import Headers

    class _Stalling:
        headers = Headers({})
        transport = StringTransport()

        def deliverBody(self, protocol) -> None:
            protocol.makeConnection(self.transport)
            protocol.dataReceived(b"x" * 1000)

    retriever = Retriever(agent=None, clock=MemoryReactorClock(), max_bytes=10**7, timeout=30,
                          tmp_dir=str(tmp_path), run=maybeDeferred)
    response = _Stalling()
    d = ensureDeferred(retriever._save(response, "http://remote/slow"))
    assert not d.called
    d.cancel()
    assert response.transport.producerState == "stopped"
    d.addErrback(lambda failure: None)
    import os

    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_fetch_over_real_http_writes_in_threads_with_back_pressure(
        tmp_path, monkeypatch) -> None:
    """With a thread pool, a large remote body is hashed and written off the reactor
    thread, the remote connection paused while the writes fall behind, bytes intact."""
    import hashlib
    import os

    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from stretchfs.threads import thread_runner

    body = os.urandom(6 * 1024 * 1024 + 5)

    class _Big(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"Content-Type", b"video/mp4")
            return body

    from stretchfs.web.intake import Backpressure, Watermarks

    pauses = []
    original_queue = Backpressure.queue

    def counting_queue(flow, size):
        original_queue(flow, size)
        if flow.paused:
            pauses.append(True)

    monkeypatch.setattr(Backpressure, "queue", counting_queue)
    port = reactor.listenTCP(0, Site(_Big()), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    retriever = Retriever(agent=Agent(reactor, pool=pool), clock=reactor,
                          max_bytes=10**9, timeout=30, tmp_dir=str(tmp_path),
                          run=thread_runner(reactor), marks=Watermarks(512 * 1024, 256 * 1024))
    try:
        fetched = await retriever.fetch("http://127.0.0.1:{}/v.mp4".format(port.getHost().port))
    finally:
        await port.stopListening()
        await pool.closeCachedConnections()
    assert fetched.size == len(body)
    assert fetched.sha1 == hashlib.sha1(body).hexdigest()
    with open(fetched.path, "rb") as handle:
        assert handle.read() == body
    assert pauses, "the remote connection was never paused"
