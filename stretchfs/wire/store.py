"""`StoreClient`: the store routes other roles call (put, download, exists, fetch, remove).

A PUT streams the file from disk in chunks through a push producer, so a
100 GiB upload never sits in memory.  Every call has an idle `Deadline`: it
fails when no byte was sent or received for `timeout` seconds (a store that
stopped taking the body, or takes longer than `timeout` to answer after the
last byte), and the connection is dropped.  A download streams the body into
an intake (`web/intake.py`) the caller opens, with the same idle limit.
Failures surface as
`PeerUnavailable` (unreachable, stalled) or `UpstreamError` (non-2xx).
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, Callable

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from stretchfs.errors import UpstreamError
from stretchfs.web.intake import BodyReceiver, IntakeT
from stretchfs.web.jsonio import decode_json
from stretchfs.wire.batchframes import MAX_BATCH_BYTES, MAX_HEADER_BYTES, BatchEntry, parse_entries
from stretchfs.wire.http import JsonClient

PUT_CHUNK_BYTES = 256 * 1024
# The store's own name of the extension of a content it sends (`/content/download`).
EXT_HEADER = b"X-StretchFS-Ext"


@implementer(IBodyProducer)
class FileProducer:
    """Streams a file to an HTTP request body, honouring back-pressure.

    `on_progress()` is called after every chunk so a watchdog can tell a
    slow store from a stalled one.
    """

    def __init__(self, handle: BinaryIO, length: int, on_progress: Any = None,
                 chunk_bytes: int = PUT_CHUNK_BYTES) -> None:
        self._handle = handle
        self.length = length
        self._on_progress = on_progress
        self._chunk = chunk_bytes
        self._consumer: IConsumer | None = None
        self._paused = False
        self._stopped = False
        self._sent = 0
        self._done: Deferred[None] | None = None

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """Write the file to `consumer`; fires when every byte was written."""
        self._consumer = consumer
        done: Deferred[None] = Deferred(lambda _: self.stopProducing())
        self._done = done
        self._pump()
        return done

    def _pump(self) -> None:
        while not self._paused and not self._stopped and self._done is not None:
            data = self._handle.read(min(self._chunk, self.length - self._sent))
            if not data:
                done, self._done = self._done, None
                if self._sent != self.length:
                    done.errback(IOError("file shrank while sending: {} of {} bytes".format(
                        self._sent, self.length)))
                else:
                    done.callback(None)
                return
            self._sent += len(data)
            assert self._consumer is not None
            self._consumer.write(data)
            if self._on_progress is not None:
                self._on_progress()

    @property
    def sending(self) -> bool:
        """Started, not finished and not stopped."""
        return self._done is not None and not self._stopped

    def pauseProducing(self) -> None:
        """The consumer's buffer is full: stop until resumed."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The consumer wants more."""
        if self._paused:
            self._paused = False
            self._pump()

    def stopProducing(self) -> None:
        """The request was abandoned: write nothing more."""
        self._stopped = True


class StoreClient:
    """Talks to one store at `base_url` with the cluster key."""

    def __init__(self, http: HTTPClient, base_url: str, cluster_key: str, timeout: float,
                 clock: Any) -> None:
        self._json = JsonClient(http, base_url, cluster_key, timeout, clock)
        self._http = http
        self._key = cluster_key
        self.timeout = timeout

    @property
    def base_url(self) -> str:
        """The store's base URL."""
        return self._json.base_url

    async def put(self, sha1: str, ext: str, source: str | bytes,
                  size: int) -> dict[str, Any]:
        """PUT the file at `source` (a path, or the bytes themselves) as `<sha1>.<ext>`;
        the store's `{"hash","ext","size"}`."""
        url = self._json.url("/content/put/{}.{}".format(sha1, ext))
        headers = Headers({b"Authorization": [b"Bearer " + self._key.encode("utf-8")],
                           b"Content-Type": [b"application/octet-stream"]})
        with self._json.deadline() as deadline:
            with (io.BytesIO(source) if isinstance(source, bytes)
                  else open(source, "rb")) as handle:
                producer = FileProducer(handle, size, on_progress=deadline.touch)
                response = await deadline.response(self._http.request(
                    "PUT", url, data=producer, headers=headers, allow_redirects=False))
                if producer.sending:
                    # The store answered before the whole body (a refusal): stop reading
                    # the file, which is about to be closed.
                    producer.stopProducing()
            body = await deadline.read(response, 64 * 1024)
        if not 200 <= response.code < 300:
            raise UpstreamError(response.code, body, url)
        try:
            return decode_json(body) if body else {}
        except ValueError:
            raise UpstreamError(response.code, body[:200], url) from None

    async def download(self, sha1: str,
                       opener: Callable[[str, int | None, Any], IntakeT]) -> IntakeT:
        """Stream the store's copy of `sha1` into the intake `opener(ext, length,
        producer)` opens (`ext` as the store names it, `length` when announced);
        the intake, once the whole body is in.  UpstreamError for a non-2xx (404:
        not held there); PeerUnavailable when unreachable, cut short or silent for
        `timeout` seconds; what the opener or the intake raised."""
        with self._json.deadline() as deadline:
            response = await self._json.request(deadline, "POST", "/content/download",
                                                {"hash": sha1})
        ext = response.headers.getRawHeaders(EXT_HEADER, [b""])[0].decode("latin-1")
        length = response.length if isinstance(response.length, int) else None
        receiver = BodyReceiver(lambda producer: opener(ext, length, producer),
                                clock=self._json.clock, idle_timeout=self.timeout)
        response.deliverBody(receiver)
        return await receiver.done

    async def exists(self, hashes: list[str], timeout: float | None = None) -> dict[str, Any]:
        """`{hash: {"exists", "ext", "size"}}` for each of `hashes`."""
        return await self._json.json("POST", "/content/exists", {"hash": list(hashes)},
                                     timeout=timeout)

    async def fetch(self, sha1: str, ext: str | None, source: str,
                    timeout: float | None = None) -> dict[str, Any]:
        """Have the store copy a content from store `source` (`POST /content/fetch`)."""
        return await self._json.json("POST", "/content/fetch",
                                     {"hash": sha1, "ext": ext, "from": source}, timeout=timeout)

    async def download_batch(self, hashes: list[str],
                             timeout: float | None = None) -> list[BatchEntry]:
        """The store's copies of `hashes` in one answer (`POST /content/download-batch`),
        a missing one with `data` None; UpstreamError for a non-2xx or a malformed body
        (more than `MAX_BATCH_BYTES` of files included), PeerUnavailable when stalled."""
        cap = MAX_BATCH_BYTES + MAX_HEADER_BYTES * len(hashes)
        with self._json.deadline(timeout) as deadline:
            response = await self._json.request(deadline, "POST", "/content/download-batch",
                                                {"hashes": list(hashes)})
            body = await deadline.read(response, cap)
        try:
            return parse_entries(body, len(hashes))
        except ValueError as exc:
            raise UpstreamError(response.code, str(exc).encode("utf-8"),
                                self._json.url("/content/download-batch")) from None

    async def fetch_batch(self, source: str, items: list[dict[str, Any]],
                          timeout: float | None = None) -> dict[str, Any]:
        """Have the store copy many small contents (`[{"hash", "ext"}]`) from store
        `source` in one request (`POST /content/fetch-batch`); `{"items": {hash: {"status",
        ...}}}`."""
        return await self._json.json("POST", "/content/fetch-batch",
                                     {"from": source, "items": items}, timeout=timeout)

    async def remove(self, sha1: str) -> dict[str, Any]:
        """Remove a content from the store."""
        return await self._json.json("POST", "/content/remove", {"hash": sha1})
