"""Streaming multipart intake: each file part goes to a temp file while hashed.

twisted.web buffers a whole request body before a handler runs.  For
`POST /content/upload` the prism's Site uses `limited_request(UploadOpener(...))`
instead: once the headers are in, the opener checks the session
(asynchronously) and every body chunk goes straight into a streaming multipart
parser (`prism/multipart.py`) whose parts are written to temp files
(`FileIntake`), computing SHA1 as they go; a file part that stays within
`SMALL_PART_BYTES` (and `SMALL_PARTS_BYTES` for the whole request) is kept in
memory and hashed on the reactor thread instead (no temp file, no trip to
the thread pool: for a 4 KiB upload that is cheaper than the trip).  The Klein handler then gets the
`MultipartUpload` with `intake_of`.  Nothing larger is ever held whole in
memory; temp files are removed by the handler, or when the request ends.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from stretchfs.errors import InvalidInput, PayloadTooLarge, StretchFSError, Unauthorized
from stretchfs.prism.multipart import MultipartParser, boundary_of
from stretchfs.web.auth import session_token
from stretchfs.web.intake import (
    Backpressure,
    Executor,
    FileIntake,
    Watermarks,
    remove_temp_file,
)
from stretchfs.web.limits import LimitedRequest
from stretchfs.wire.identifiers import EXT_RE

log = Logger()

UPLOAD_PATH = b"/content/upload"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS_BYTES = 1024 * 1024
MAX_PARTS = 1000
SMALL_PART_BYTES = 64 * 1024
SMALL_PARTS_BYTES = 1024 * 1024
FRAMING_BYTES = 64 * 1024

SessionCheck = Callable[[str | None], "Coroutine[Any, Any, Any] | Deferred[Any]"]


@dataclass
class UploadedFile:
    """One file part, complete on disk."""

    field: str
    filename: str
    mimetype: str
    path: str  # "" while the part is kept in memory
    sha1: str
    size: int
    data: bytes | None = None

    @property
    def source(self) -> str | bytes:
        """What to send: the bytes of a part kept in memory, else its temp file's path."""
        return self.data if self.data is not None else self.path


def extension_for(mimetype: str, filename: str) -> str:
    """Extension from the MIME type, else from the filename, else `bin`."""
    kind = (mimetype or "").split(";", 1)[0].strip().lower()
    if kind and kind != "application/octet-stream":
        guessed = mimetypes.guess_extension(kind, strict=False)
        if guessed:
            ext = guessed.lstrip(".").lower()
            ext = {"jpe": "jpg", "jpeg": "jpg", "mp4v": "mp4", "m4v": "m4v"}.get(ext, ext)
            if EXT_RE.match(ext):
                return ext
    base = os.path.basename(filename or "")
    if "." in base:
        ext = base.rsplit(".", 1)[1].lower()
        if EXT_RE.match(ext):
            return ext
    return "bin"


class MultipartUpload:
    """Parses a multipart body fed in chunks; file parts land in `tmp_dir`, hashed and
    written on `run`, the connection paused through `flow` while that falls behind.

    An error of the body (malformed, a field too large) is kept in `error` and
    the rest of the body dropped; only a body past `max_bytes` plus its form
    fields is refused while it comes (`write` raises).
    """

    def __init__(self, content_type: str, tmp_dir: str, max_bytes: int, *, run: Executor,
                 flow: Backpressure) -> None:
        self.fields: dict[str, str] = {}
        self._run = run
        self._flow = flow
        self._closing: list[Deferred[Any]] = []
        self.files: list[UploadedFile] = []
        self.error: StretchFSError | None = None
        self.received = 0
        self._tmp_dir = tmp_dir
        self._max = max_bytes
        self._field_bytes = 0
        self._name = ""
        self._filename: str | None = None
        self._content_type = ""
        self._sink: FileIntake | None = None
        self._memory: list[bytes] | None = None  # the current file part, while small
        self._memory_size = 0
        self._memory_total = 0
        self._value: list[bytes] = []
        self._value_size = 0
        self._parts = 0
        self._parser: MultipartParser | None = None
        try:
            self._parser = MultipartParser(boundary_of(content_type), self)
        except InvalidInput as exc:
            self.error = exc

    # -- parser callbacks (PartSink) ---------------------------------------------
    def start_part(self, name: str, filename: str | None, content_type: str) -> None:
        """A part begins: a file part (with a filename) opens a temp file."""
        self._name = name
        self._filename = filename
        self._content_type = content_type
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise PayloadTooLarge("more than {} parts".format(MAX_PARTS))
        if not filename:  # no file chosen in a browser form: filename=""
            self._value, self._value_size = [], 0
            return
        self._memory, self._memory_size = [], 0

    def _spill(self) -> None:
        """The file part outgrew memory: on to a temp file with what came so far."""
        kept, self._memory = self._memory or [], None
        self._memory_total -= self._memory_size
        fd, path = tempfile.mkstemp(prefix="stretchfs-upload-", dir=self._tmp_dir)
        self._sink = FileIntake(path, os.fdopen(fd, "wb"), self._run, self._flow,
                                max_bytes=self._max, what="upload")
        for chunk in kept:
            self._sink.write(chunk)

    def part_data(self, chunk: bytes) -> None:
        """The next bytes of the part: kept (a form field, a small file) or to its
        temp file."""
        if self._memory is not None:
            self._memory.append(chunk)
            self._memory_size += len(chunk)
            self._memory_total += len(chunk)
            if self._memory_size > self._max:
                raise PayloadTooLarge("upload larger than {} bytes".format(self._max))
            if self._memory_size > SMALL_PART_BYTES or self._memory_total > SMALL_PARTS_BYTES:
                self._spill()
            return
        if self._sink is None:
            self._field_bytes += len(chunk)
            self._value.append(chunk)
            self._value_size += len(chunk)
            if self._value_size > MAX_FIELD_BYTES:
                raise PayloadTooLarge("form field {} larger than {} bytes".format(
                    self._name, MAX_FIELD_BYTES))
            if self._field_bytes > MAX_FIELDS_BYTES:
                raise PayloadTooLarge("form fields larger than {} bytes".format(MAX_FIELDS_BYTES))
            return
        self._sink.write(chunk)

    def end_part(self) -> None:
        """The part is complete: a field's value is kept, a small file hashed, a
        file's hashing awaited."""
        if self._memory is not None:
            data, self._memory = b"".join(self._memory), None
            self.files.append(UploadedFile(
                field=self._name, filename=self._filename or "",
                mimetype=self._content_type or "application/octet-stream", path="",
                sha1=hashlib.sha1(data).hexdigest(), size=len(data), data=data))
            return
        if self._sink is None:
            self.fields[self._name] = b"".join(self._value).decode("utf-8", "replace")
            self._value = []
            return
        sink, self._sink = self._sink, None
        part = UploadedFile(
            field=self._name, filename=self._filename or "",
            mimetype=self._content_type or "application/octet-stream", path=sink.path,
            sha1="", size=sink.size)
        self.files.append(part)
        d = sink.finish()

        def hashed(sha1: str) -> None:
            part.sha1 = sha1

        self._closing.append(d.addCallback(hashed))

    # -- feeding ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Consume a chunk of the body; after an error the rest is dropped.  PayloadTooLarge
        once the body passes one file at the limit plus form fields and framing."""
        self.received += len(data)
        limit = self._max + MAX_FIELDS_BYTES + FRAMING_BYTES
        if self.received > limit:
            error = PayloadTooLarge("upload larger than {} bytes".format(self._max))
            self.fail(error)
            raise error
        if self.error is not None or self._parser is None:
            return
        try:
            self._parser.feed(data)
        except StretchFSError as exc:
            self._fail(exc)
        except OSError as exc:
            log.error("cannot write upload temp file: {error}", error=str(exc))
            self._fail(StretchFSError("cannot store the upload temporarily"))

    def fail(self, error: StretchFSError) -> None:
        """Refuse the upload (e.g. bad session): drop what came and what comes."""
        self._fail(error)
        for part in self.files:
            if part.path:
                remove_temp_file(part.path)

    def abandon(self) -> None:
        """The client went away mid-body: remove every temp file."""
        self.fail(InvalidInput("connection lost"))
        self.cleanup()

    def _fail(self, error: StretchFSError) -> None:
        if self.error is None:
            self.error = error
        self._drop_open_part()

    async def complete(self) -> None:
        """The body is complete: wait for every part to be on disk; raise the upload's error."""
        closing, self._closing = self._closing, []
        for d in closing:
            try:
                await d
            except Exception as exc:  # noqa: BLE001 - disk errors in the writer threads
                log.error("cannot write upload temp file: {error}", error=str(exc))
                self._fail(StretchFSError("cannot store the upload temporarily"))
        self.finish()

    def finish(self) -> None:
        """The body is complete; raise the upload's error if there was one."""
        if self.error is None and self._parser is not None and self._parser.in_part:
            self._fail(InvalidInput("multipart body ended inside a part"))
        if self.error is not None:
            raise self.error

    def _drop_open_part(self) -> None:
        self._memory = None
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.abandon()

    def cleanup(self) -> None:
        """Remove every temp file (idempotent)."""
        self._drop_open_part()
        for part in self.files:
            if part.path:
                remove_temp_file(part.path)


class UploadOpener:
    """Opens the `MultipartUpload` of a `POST /content/upload` (see `limited_request`).

    A declared length over the limit is refused at once; the session is
    checked with `check_session` while the body comes, and a bad one refuses
    the request if the body is still coming.  Parts are hashed and written on
    `run`, the connection paused past the `marks`.
    """

    def __init__(self, tmp_dir: str, max_bytes: int,
                 check_session: SessionCheck, *, run: Executor,
                 marks: Watermarks = Watermarks()) -> None:
        self._tmp_dir = tmp_dir or tempfile.gettempdir()
        self._max = max_bytes
        self._check_session = check_session
        self._run = run
        self._marks = marks

    def __call__(self, request: LimitedRequest, length: int | None) -> MultipartUpload | None:
        """The upload of `request` (None for other requests)."""
        if request.head() != (b"POST", UPLOAD_PATH):
            return None
        if length is not None and length > self._max + MAX_FIELDS_BYTES + FRAMING_BYTES:
            raise PayloadTooLarge("upload larger than {} bytes".format(self._max))
        ctype = request.getHeader(b"content-type") or b""
        upload = MultipartUpload(ctype.decode("latin-1"), self._tmp_dir, self._max,
                                 run=self._run, flow=Backpressure(request.transport, self._marks))
        # Whatever happens to the request (answered, refused, cut), its temp files go.
        request.notifyFinish().addBoth(lambda _: upload.cleanup())
        ensureDeferred(self._check_session(session_token(request))).addErrback(
            self._session_refused, request, upload)
        return upload

    @staticmethod
    def _session_refused(failure: Any, request: LimitedRequest,
                         upload: MultipartUpload) -> None:
        """No valid session: stop writing, and answer now if the body is still coming."""
        error = failure.value
        if not isinstance(error, StretchFSError):
            error = Unauthorized("invalid session")
        upload.fail(error)
        if not request.body_received:
            request.refuse_now(error)
