"""Signed GET/HEAD delivery of content: the store's hot path.

A raw twisted.web resource (no Klein routing per download): match the path
against `/content/ab/cd/<sha1>.<ext>`, check the signature and expiry
(stretchfs.wire.signing, the same scheme nginx's secure_link checks), open the
file, answer with `ETag`, `Last-Modified`, `Content-Type`, `Accept-Ranges`
and a single `Range` (206/416), and stream the bytes with a push producer:
never the whole file in memory, never a long reactor stall.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import re
from typing import BinaryIO

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web import http
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from stretchfs.errors import RangeNotSatisfiable
from stretchfs.store.stats import StoreStats
from stretchfs.web.jsonio import write_json
from stretchfs.wire.identifiers import EXT_PATTERN, SHA1_PATTERN
from stretchfs.wire.signing import verify

CONTENT_PATH_RE = re.compile("^/content/([0-9a-f]{{2}})/([0-9a-f]{{2}})/(({})\\.({}))$".format(
    SHA1_PATTERN, EXT_PATTERN).encode("ascii"))
DEFAULT_CONTENT_TYPE = "application/octet-stream"
CHUNK_BYTES = 64 * 1024
MAX_RANGE_DIGITS = 18  # no file is 10**18 bytes; longer numbers are clamped, never int()'d


@implementer(IPushProducer)
class FileStreamer:
    """Writes `length` bytes of an open file from `offset` to a request, then finishes it.

    A push producer: it writes chunks until the transport's buffer is full
    (`pauseProducing`) and carries on when it drains, so a large file never
    holds the reactor for more than a buffer's worth of reads, and a slow
    client never makes it read ahead.  The file is closed in every case.
    """

    def __init__(self, request: Request, handle: BinaryIO, offset: int, length: int) -> None:
        self._request = request
        self._handle = handle
        self._remaining = length
        self._offset = offset
        self._paused = False
        self._done = False
        self._pumping = False

    def start(self) -> None:
        """Register with the request and start writing."""
        if self._offset:
            self._handle.seek(self._offset)
        self._request.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._paused and not self._done and self._remaining > 0:
                try:
                    data = self._handle.read(min(CHUNK_BYTES, self._remaining))
                except OSError:
                    data = b""
                if not data:
                    # The file shrank or cannot be read: the promised Content-Length
                    # cannot be kept, so the connection must not be reused.
                    self._abort()
                    return
                self._remaining -= len(data)
                self._request.write(data)
        finally:
            self._pumping = False
        if self._remaining <= 0 and not self._done:
            self._done = True
            self._handle.close()
            self._request.unregisterProducer()
            self._request.finish()

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport wants more."""
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The client went away: close the file, write nothing more."""
        if not self._done:
            self._done = True
            self._handle.close()

    def _abort(self) -> None:
        self._done = True
        self._handle.close()
        self._request.unregisterProducer()
        transport = getattr(self._request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()


@functools.lru_cache(maxsize=256)
def content_type(ext: str) -> bytes:
    """The MIME type of an extension (application/octet-stream when unknown)."""
    guessed, _ = mimetypes.guess_type("file." + ext, strict=False)
    return (guessed or DEFAULT_CONTENT_TYPE).encode("ascii")


def parse_range(header: bytes, size: int) -> tuple[int, int] | None:
    """The single byte range (first, last inclusive) asked for, None to send it all.

    Malformed headers and multi-range requests are ignored (the whole file
    is sent, as RFC 9110 allows); a range that starts past the end raises
    RangeNotSatisfiable.
    """
    if header[:6].lower() != b"bytes=":
        return None
    spec = header[6:].strip()
    if b"," in spec or b"-" not in spec:
        return None
    first_text, last_text = (part.strip() for part in spec.split(b"-", 1))
    if (first_text and not first_text.isdigit()) or (last_text and not last_text.isdigit()):
        return None
    if len(first_text) > MAX_RANGE_DIGITS or len(last_text) > MAX_RANGE_DIGITS:
        # Beyond any file size: a start that far is unsatisfiable, an end or suffix
        # that far means "to the end" / "everything".
        if len(first_text) > MAX_RANGE_DIGITS:
            raise RangeNotSatisfiable("range not satisfiable", size)
        last_text = b"%d" % size
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("range not satisfiable", size)
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else None
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable("range not satisfiable", size)
    if last is None:
        last = size - 1
    return first, min(last, size - 1)


def not_modified(request: Request, etag: bytes, mtime: int) -> bool:
    """Whether the client's cached copy is current (RFC 9110 13.1.2-13.1.3).

    `If-None-Match` (a comma-separated list, weak tags match) wins over
    `If-Modified-Since`; an unreadable date counts as absent.
    """
    tags = request.getHeader(b"if-none-match")
    if tags is not None:
        candidates = [tag.strip() for tag in tags.split(b",")]
        return any(tag in (b"*", etag, b"W/" + etag) for tag in candidates)
    since = request.getHeader(b"if-modified-since")
    if since is None:
        return False
    try:
        return mtime <= http.stringToDatetime(since)
    except (ValueError, IndexError, KeyError, OverflowError):
        return False


class DeliveryResource:
    """Serves signed content paths from a store root."""

    def __init__(self, root: str, secret: str, clock: IReactorTime, stats: StoreStats) -> None:
        self._root = os.path.abspath(root)
        self._secret = secret
        self._clock = clock
        self._stats = stats

    @staticmethod
    def match(request: Request) -> re.Match[bytes] | None:
        """The path match when `request` is a GET/HEAD of a content path, else None."""
        if request.method not in (b"GET", b"HEAD"):
            return None
        return CONTENT_PATH_RE.match(request.path)

    def render(self, request: Request, match: re.Match[bytes]) -> bytes | int:
        """Answer one delivery request whose path matched `CONTENT_PATH_RE`."""
        first, second, name, sha1, ext = match.groups()
        if first + second != sha1[:4]:
            return write_json(request, {"error": "not found"}, 404)
        args = request.args
        signature = args.get(b"md5", (b"",))[0]
        expires = args.get(b"expires", (b"",))[0]
        path = request.path.decode("ascii")
        if not verify(self._secret, path, expires.decode("latin-1"),
                      signature.decode("latin-1"), self._clock.seconds()):
            self._stats.denied += 1
            return write_json(request, {"error": "invalid or expired signature"}, 403)
        handle = self._open(path, sha1)
        if handle is None:
            return write_json(request, {"error": "content not found"}, 404)
        try:
            return self._send(request, handle, sha1, ext)
        except BaseException:
            handle.close()
            raise

    def _open(self, path: str, sha1: bytes) -> BinaryIO | None:
        """The file of `path` (/content/...), else the same content under another
        extension, else a copy removed within `[store] remove_grace` (/leaving/...,
        `store/leaving.py`); None when there is none."""
        for candidate in (path, "/leaving/" + path[len("/content/"):]):
            try:
                return open(self._root + candidate, "rb")
            except (FileNotFoundError, NotADirectoryError):
                handle = self._open_any_extension(candidate, sha1)
                if handle is not None:
                    return handle
        return None

    def _open_any_extension(self, path: str, sha1: bytes) -> BinaryIO | None:
        """The same content stored under another extension (the bytes are the same:
        stores of one hash may differ in extension), None when there is none."""
        folder = self._root + path.rsplit("/", 1)[0]
        prefix = sha1.decode("ascii") + "."
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if e.name.startswith(prefix)]
        except (FileNotFoundError, NotADirectoryError):
            return None
        for name in names:
            try:
                return open(os.path.join(folder, name), "rb")
            except FileNotFoundError:
                continue
        return None

    def _send(self, request: Request, handle: BinaryIO, sha1: bytes, ext: bytes) -> bytes | int:
        info = os.fstat(handle.fileno())
        size = info.st_size
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Content-Type", content_type(ext.decode("ascii")))
        etag = b'"' + sha1 + b'"'
        request.setHeader(b"ETag", etag)
        request.setHeader(b"Last-Modified", http.datetimeToString(int(info.st_mtime)))
        if not_modified(request, etag, int(info.st_mtime)):
            handle.close()
            request.setResponseCode(http.NOT_MODIFIED)
            request.finish()  # no body and no Content-Length on a 304
            return NOT_DONE_YET
        wanted = None
        range_header = request.getHeader(b"range")
        if range_header is not None and self._range_applies(request, etag):
            try:
                wanted = parse_range(range_header, size)
            except RangeNotSatisfiable:
                handle.close()
                request.setHeader(b"Content-Range", b"bytes */%d" % size)
                return write_json(request, {"error": "range not satisfiable"}, 416)
        if wanted is None:
            offset, length = 0, size
        else:
            offset, length = wanted[0], wanted[1] - wanted[0] + 1
            request.setResponseCode(http.PARTIAL_CONTENT)
            request.setHeader(b"Content-Range",
                              b"bytes %d-%d/%d" % (wanted[0], wanted[1], size))
        request.setHeader(b"Content-Length", b"%d" % length)
        if request.method == b"HEAD" or length == 0:
            handle.close()
            return b""
        self._stats.bytes_served += length
        self._stats.deliveries += 1
        FileStreamer(request, handle, offset, length).start()
        return NOT_DONE_YET

    @staticmethod
    def _range_applies(request: Request, etag: bytes) -> bool:
        condition = request.getHeader(b"if-range")
        return condition is None or condition.strip() == etag


class StoreRoot(Resource):
    """The store's site root: content paths go to delivery, the rest to Klein."""

    isLeaf = True

    def __init__(self, delivery: DeliveryResource, api_resource: IResource) -> None:
        super().__init__()
        self._delivery = delivery
        self._api = api_resource

    def render(self, request: Request) -> bytes | int:
        """Dispatch one request."""
        match = DeliveryResource.match(request)
        if match is not None:
            return self._delivery.render(request, match)
        return self._api.render(request)
