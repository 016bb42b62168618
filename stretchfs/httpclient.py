"""Outgoing HTTP between roles: one treq client per process, typed errors.

Every role's client class (`MasterClient`, `StoreClient`, ...) wraps a
`JsonClient`: it sets the cluster key, passes a timeout on every request,
turns connection failures into `PeerUnavailable` and non-2xx answers into
`UpstreamError`, and caps the size of the bodies it reads.
"""

from __future__ import annotations

from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.internet.error import TimeoutError as NetTimeout
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.iweb import IResponse

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.web.jsonio import decode_json, encode_json

MAX_REPLY_BYTES = 16 * 1024 * 1024
_CONNECTION_ERRORS = (ConnectError, ConnectionLost, NetTimeout, CancelledError,
                      ResponseNeverReceived, ConnectionRefusedError, OSError)


def make_http_client(reactor: Any, persistent: bool = True,
                     max_per_host: int = 16) -> HTTPClient:
    """A treq client with a (persistent) connection pool on `reactor`."""
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = 60
    return HTTPClient(Agent(reactor, pool=pool))


async def read_capped(response: IResponse, max_bytes: int = MAX_REPLY_BYTES) -> bytes:
    """Read a response body, refusing to buffer more than `max_bytes`."""
    length = response.length
    if isinstance(length, int) and length > max_bytes:
        discard_body(response)
        raise UpstreamError(response.code, b"reply too large")
    chunks: list[bytes] = []
    seen = 0

    def keep(data: bytes) -> None:
        nonlocal seen
        seen += len(data)
        if seen > max_bytes:  # treq drops the connection when the collector raises
            raise UpstreamError(response.code, b"reply too large")
        chunks.append(data)

    await treq.collect(response, keep)
    return b"".join(chunks)


def discard_body(response: IResponse) -> None:
    """Drop a response body we refuse to read (the connection is closed)."""
    response.deliverBody(_Discard())


class _Discard:
    """A protocol that stops its transport at once."""

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


class JsonClient:
    """JSON requests to one peer's base URL with the cluster key."""

    def __init__(self, http: HTTPClient, base_url: str, cluster_key: str,
                 timeout: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._headers = {b"Authorization": [b"Bearer " + cluster_key.encode("utf-8")]}
        self.timeout = timeout

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this peer."""
        return self.base_url + path

    async def request(self, method: str, path: str, body: Any = None,
                      params: dict[str, Any] | None = None,
                      timeout: float | None = None, **kwargs: Any) -> IResponse:
        """Send a request; raise PeerUnavailable or UpstreamError on failure."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = encode_json(body)
            headers[b"Content-Type"] = [b"application/json"]
        url = self.url(path)
        try:
            response = await self.http.request(method, url, data=data, params=params,
                                               headers=headers,
                                               timeout=timeout or self.timeout, **kwargs)
        except _CONNECTION_ERRORS as exc:
            raise PeerUnavailable("{} unreachable: {}".format(self.base_url,
                                                              exc.__class__.__name__)) from None
        if not 200 <= response.code < 300:
            body_bytes = await read_capped(response, 64 * 1024)
            raise UpstreamError(response.code, body_bytes, url)
        return response

    async def json(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Send a request and decode its JSON answer."""
        response = await self.request(method, path, body, params, timeout)
        data = await read_capped(response)
        try:
            return decode_json(data) if data else None
        except ValueError:
            raise UpstreamError(response.code, data[:200], self.url(path)) from None
