"""`UploadBody`: one file as a streamed `multipart/form-data` body, hashed as it is sent.

The body is the form fields, then the file part read CHUNK_BYTES at a time,
each chunk hashed (SHA1) and reported to the progress callback as it goes
out — in the sending thread: no thread hand-off per chunk.  The framing
rides with the first and last chunks, so a small file is one write (one
segment for the prism to parse) and a large one costs two extra copies.
Iterating again (a retry) starts over from where the source stood, hash and
progress included; an unseekable source is sent once.

`pieces()` is the same body for `stretchfs.client.rawhttp` (plain-http
uploads of regular files): a file up to INLINE_BYTES is read in one call and
sent as one piece with its framing; a larger one is a `FileSpan` (sent with
sendfile) between the framing, hashed meanwhile on a thread of its own that
reads it again into one reused buffer (hashlib and pread release the GIL).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from typing import IO, Callable, Iterator

from stretchfs.client.errors import IntegrityError
from stretchfs.client.rawhttp import FileSpan

CHUNK_BYTES = 1024 * 1024
INLINE_BYTES = 256 * 1024

_ESCAPES = {'"': "%22", "\\": "\\\\"}
_ESCAPES.update({chr(c): "%{:02X}".format(c) for c in range(0x20) if c != 0x1B})
_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _ESCAPES))


def form_param(name: str, value: str) -> bytes:
    """`name="value"` as browsers write it in a Content-Disposition (HTML5 escapes)."""
    escaped = _ESCAPE_RE.sub(lambda match: _ESCAPES[match.group(0)], value)
    return '{}="{}"'.format(name, escaped).encode()


def size_of(source: IO[bytes]) -> int | None:
    """Bytes left in `source` from where it stands, or None when that cannot be known."""
    try:
        return os.fstat(source.fileno()).st_size - source.tell()
    except (AttributeError, OSError, ValueError):
        pass
    if source.seekable():
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
        return end - here
    return None


class UploadBody:
    """The body of `POST /content/upload` for one file part named `field`.

    `headers` gives Content-Type (and Content-Length when the size is known);
    `hexdigest()` is the SHA1 of the file bytes sent by the last iteration (or
    `pieces()`).  `boundary` is random unless given (tests).
    """

    def __init__(self, source: IO[bytes], filename: str, *, field: str = "file",
                 fields: dict[str, str] | None = None,
                 progress: Callable[[int, int | None], None] | None = None,
                 boundary: bytes | None = None) -> None:
        self._source = source
        self._start = source.tell() if source.seekable() else 0
        self.size = size_of(source)
        self._progress = progress
        self._sha1 = hashlib.sha1()
        self._hashing: _SpanHasher | None = None
        boundary = boundary or os.urandom(16).hex().encode("ascii")
        preamble = b"".join(
            b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n"
            % (boundary, form_param("name", name), value.encode())
            for name, value in (fields or {}).items())
        self._head = preamble + (
            b"--%s\r\nContent-Disposition: form-data; %s; %s\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n"
            % (boundary, form_param("name", field), form_param("filename", filename)))
        self._tail = b"\r\n--%s--\r\n" % boundary
        self.headers = {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}
        if self.size is not None:
            self.headers["Content-Length"] = str(len(self._head) + self.size + len(self._tail))

    def seekable(self) -> bool:
        """Whether the body can be sent again (a retry)."""
        return self._source.seekable()

    def __iter__(self) -> Iterator[bytes]:
        """The body's bytes, from the start; the file part hashed and reported on the way."""
        if self._source.seekable():
            self._source.seek(self._start)
        sha1 = self._sha1 = hashlib.sha1()
        read, progress, total = self._source.read, self._progress, self.size
        head, done = self._head, 0
        while total is None or done < total:  # never more than Content-Length says
            chunk = read(CHUNK_BYTES if total is None else min(CHUNK_BYTES, total - done))
            if not chunk:
                break
            sha1.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            if done == total:  # the last chunk goes out with the closing boundary
                yield head + chunk + self._tail
                return
            yield head + chunk
            head = b""
        yield head + self._tail

    def sendable_fd(self) -> int | None:
        """The source's descriptor when it is a regular file of known size (sendfile-able)."""
        if self.size is None:
            return None
        try:
            fd = self._source.fileno()
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except (AttributeError, OSError, ValueError):
            return None
        return fd if regular else None

    def pieces(self) -> list[bytes | FileSpan]:
        """The body for rawhttp (only when `sendable_fd()` is not None), from the start again."""
        fd, size, progress = self.sendable_fd(), self.size, self._progress
        assert fd is not None and size is not None
        self._sha1 = hashlib.sha1()
        self._hashing = None
        if size <= INLINE_BYTES:
            data = os.pread(fd, size, self._start)
            self._sha1.update(data)
            if progress is not None:
                progress(len(data), size)
            return [self._head + data + self._tail]
        self._hashing = _SpanHasher(fd, self._start, size)
        sent = None if progress is None else (lambda done: progress(done, size))
        return [self._head, FileSpan(fd, self._start, size, sent), self._tail]

    def hexdigest(self) -> str:
        """The SHA1 of the file bytes the last iteration (or `pieces()`) read."""
        if self._hashing is not None:
            return self._hashing.hexdigest()
        return self._sha1.hexdigest()


class _SpanHasher:
    """SHA1 of `count` bytes of `fd` from `offset`, computed on a thread of its own."""

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self._sha1 = hashlib.sha1()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(fd, offset, count),
                                        name="upload-sha1", daemon=True)
        self._thread.start()

    def _run(self, fd: int, offset: int, count: int) -> None:
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        end = offset + count
        try:
            while offset < end:
                got = os.preadv(fd, [view[:min(CHUNK_BYTES, end - offset)]], offset)
                if got == 0:
                    return  # shrank: the digest will not match what was stored
                self._sha1.update(view[:got])
                offset += got
        except OSError as exc:
            self._error = exc

    def hexdigest(self) -> str:
        """Wait for the hash (reading the file is bounded by its size)."""
        self._thread.join()
        if self._error is not None:
            raise IntegrityError("could not read the file again to hash it: {}".format(
                self._error.strerror or self._error))
        return self._sha1.hexdigest()
