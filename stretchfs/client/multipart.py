"""`UploadBody`: one file as a streamed `multipart/form-data` body, hashed as it is sent.

The body is the form fields, then the file part read CHUNK_BYTES at a time,
each chunk hashed (SHA1) and reported to the progress callback as it goes
out — in the sending thread: no thread hand-off per chunk.  The framing
rides with the first and last chunks, so a small file is one write (one
segment for the prism to parse) and a large one costs two extra copies.
Iterating again (a retry) starts over from where the source stood, hash and
progress included; an unseekable source is sent once.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import IO, Callable, Iterator

CHUNK_BYTES = 1024 * 1024

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
    `hexdigest()` is the SHA1 of the file bytes sent by the last iteration.
    """

    def __init__(self, source: IO[bytes], filename: str, *, field: str = "file",
                 fields: dict[str, str] | None = None,
                 progress: Callable[[int, int | None], None] | None = None) -> None:
        self._source = source
        self._start = source.tell() if source.seekable() else 0
        self.size = size_of(source)
        self._progress = progress
        self._sha1 = hashlib.sha1()
        boundary = os.urandom(16).hex().encode("ascii")
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

    def hexdigest(self) -> str:
        """The SHA1 of the file bytes the last iteration read."""
        return self._sha1.hexdigest()
