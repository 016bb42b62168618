"""httpx transports for client tests: the real prism app in memory, and a store stand-in."""

from __future__ import annotations

from typing import Any, Callable

import httpx

from tests.helpers import result_of

HOP_BY_HOP = {"content-length", "connection", "host", "transfer-encoding"}


class PrismTransport(httpx.BaseTransport):
    """Sends httpx requests to a prism built by tests.prism.harness.make_prism, in memory."""

    def __init__(self, prism: Any) -> None:
        self.prism = prism
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Replay the request on the prism's resource and pump until it answers."""
        self.requests.append(request)
        body = request.read()
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.multi_items():
            if name.lower() not in HOP_BY_HOP:
                headers.setdefault(name, []).append(value)
        d = self.prism.client.request(request.method, str(request.url), data=body or None,
                                      headers=headers, allow_redirects=False)
        self.prism.pump()
        response = result_of(d)
        content = result_of(self.prism.client.content(response))
        raw = [(name.decode(), value.decode()) for name, values in
               response.headers.getAllRawHeaders() for value in values]
        return httpx.Response(response.code, headers=raw, content=content, request=request)


class StoreStandIn(httpx.BaseTransport):
    """A signed-URL endpoint serving `data` with Range; `cut_after` cuts one answer short."""

    def __init__(self, data: bytes, etag: str) -> None:
        self.data = data
        self.etag = etag
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        self.on_request: Callable[[httpx.Request], httpx.Response | None] = lambda r: None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """200 or 206 with the asked bytes; a cut answer raises mid-body like a reset."""
        special = self.on_request(request)
        if special is not None:
            return special
        wanted = request.headers.get("range")
        self.ranges.append(wanted)
        start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        if start >= len(self.data) and wanted:
            return httpx.Response(416, request=request)
        body = self.data[start:]
        headers = {"etag": '"{}"'.format(self.etag), "content-length": str(len(body))}
        status = 206 if wanted else 200
        cut, self.cut_after = self.cut_after, None
        stream = _CutStream(body, cut) if cut is not None else httpx.ByteStream(body)
        return httpx.Response(status, headers=headers, stream=stream, request=request)


class _CutStream(httpx.SyncByteStream):
    def __init__(self, body: bytes, cut: int) -> None:
        self.body = body
        self.cut = cut

    def __iter__(self):
        yield self.body[:self.cut]
        raise httpx.ReadError("connection reset by peer")
