"""Streaming multipart intake: each file part goes to a temp file while hashed.

twisted.web buffers a whole request body before a handler runs.  For
`POST /content/upload` the prism's Site uses `UploadRequest` instead: once
the headers are in, it checks the session (asynchronously) and feeds every
body chunk straight into a streaming multipart parser (streaming-form-data)
whose targets write file parts to temp files, computing SHA1 as they go.
The Klein handler then finds the finished parts on `request.stretchfs_upload`.
Nothing is ever held whole in memory; temp files are removed by the handler,
or when the connection is lost.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.errors import InvalidInput, PayloadTooLarge, StretchFSError, Unauthorized
from stretchfs.prism.sinks import Backpressure, InlineSink, ThreadedSink
from stretchfs.threads import thread_runner
from stretchfs.web.limits import LimitedRequest
from stretchfs.wire.identifiers import EXT_RE

log = Logger()

UPLOAD_PATH = b"/content/upload"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS_BYTES = 1024 * 1024
MAX_PARTS = 1000
MAX_QUIET_BYTES = 64 * 1024
BUFFERED_READ_BYTES = 256 * 1024


@dataclass
class UploadedFile:
    """One file part, complete on disk."""

    field: str
    filename: str
    mimetype: str
    path: str
    sha1: str
    size: int


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


class _PartTarget(BaseTarget):
    """Dispatches the parser's parts: fields to memory, files to temp files."""

    def __init__(self, upload: "MultipartUpload") -> None:
        super().__init__()
        self._upload = upload

    def set_multipart_filename(self, filename: str) -> None:
        self._upload._filename = filename

    def set_multipart_content_type(self, content_type: str) -> None:
        self._upload._content_type = content_type

    def on_start(self) -> None:
        self._upload._start_part()

    def on_data_received(self, chunk: bytes) -> None:
        self._upload._part_data(chunk)

    def on_finish(self) -> None:
        self._upload._finish_part()


class MultipartUpload:
    """Parses a multipart body fed in chunks; file parts land in `tmp_dir`."""

    def __init__(self, content_type: str, tmp_dir: str, max_bytes: int,
                 prefix: str = "stretchfs-upload-",
                 offload: tuple[Callable[..., Deferred[Any]], Callable[[], None],
                                Callable[[], None]] | None = None) -> None:
        self.fields: dict[str, str] = {}
        self._run: Callable[..., Deferred[Any]] | None = None
        self._flow: Backpressure | None = None
        if offload is not None:
            self._run = offload[0]
            self._flow = Backpressure(offload[1], offload[2])
        self._closing: list[Deferred[Any]] = []
        self.files: list[UploadedFile] = []
        self.error: StretchFSError | None = None
        self.received = 0
        self._tmp_dir = tmp_dir
        self._max = max_bytes
        self._prefix = prefix
        self._field_bytes = 0
        self._name = ""
        self._filename: str | None = None
        self._content_type = ""
        self._sink: Any = None
        self._path = ""
        self._size = 0
        self._value: list[bytes] = []
        self._parts = 0
        self._closed = False
        self._quiet_bytes = 0  # fed since the parser last reported anything
        self._in_part = False
        self._heard = False
        try:
            self._parser = StreamingFormDataParser({"Content-Type": content_type})
        except ParseFailedException as exc:
            self._parser = None
            self.error = InvalidInput("expected a multipart/form-data body: {}".format(exc))
            return
        self._parser.register("*", _PartTarget(self), matches=self._match)

    # -- parser callbacks ------------------------------------------------------
    def _match(self, _registered: str, name: str) -> bool:
        self._heard = True
        self._name = name
        self._filename = None
        self._content_type = ""
        return True

    def _start_part(self) -> None:
        self._heard = True
        self._in_part = True
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise PayloadTooLarge("more than {} parts".format(MAX_PARTS))
        if not self._filename:  # no file chosen in a browser form: filename=""
            self._value = []
            return
        fd, self._path = tempfile.mkstemp(prefix=self._prefix, dir=self._tmp_dir)
        handle = os.fdopen(fd, "wb")
        if self._run is None or self._flow is None:
            self._sink = InlineSink(handle)
        else:
            self._sink = ThreadedSink(handle, self._run, self._flow)
        self._size = 0

    def _part_data(self, chunk: bytes) -> None:
        self._heard = True
        if self._sink is None:
            self._field_bytes += len(chunk)
            self._value.append(chunk)
            if sum(map(len, self._value)) > MAX_FIELD_BYTES:
                raise PayloadTooLarge("form field {} larger than {} bytes".format(
                    self._name, MAX_FIELD_BYTES))
            if self._field_bytes > MAX_FIELDS_BYTES:
                raise PayloadTooLarge("form fields larger than {} bytes".format(MAX_FIELDS_BYTES))
            return
        self._size += len(chunk)
        if self._size > self._max:
            raise PayloadTooLarge("upload larger than {} bytes".format(self._max))
        self._sink.write(chunk)

    def _finish_part(self) -> None:
        self._heard = True
        self._in_part = False
        if self._sink is None:
            self.fields[self._name] = b"".join(self._value).decode("utf-8", "replace")
            self._value = []
            return
        part = UploadedFile(
            field=self._name, filename=self._filename or "",
            mimetype=self._content_type or "application/octet-stream", path=self._path,
            sha1="", size=self._size)
        self.files.append(part)
        d = self._sink.close()
        self._sink = None
        self._path = ""

        def hashed(sha1: str) -> None:
            part.sha1 = sha1

        self._closing.append(d.addCallback(hashed))

    # -- feeding ---------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume a chunk of the body; after an error the rest is dropped."""
        self.received += len(data)
        if self.error is not None or self._parser is None:
            return
        try:
            self._heard = False
            self._parser.data_received(data)
            self._quiet_bytes = 0 if self._heard else self._quiet_bytes + len(data)
            if self._quiet_bytes > MAX_QUIET_BYTES:
                # The parser holds part headers (or a preamble) in memory until they
                # end: a body that never ends them must not grow that without bound.
                raise InvalidInput("malformed multipart body: part headers longer than "
                                   "{} bytes".format(MAX_QUIET_BYTES))
        except StretchFSError as exc:
            self._fail(exc)
        except ParseFailedException as exc:
            self._fail(InvalidInput("malformed multipart body: {}".format(exc)))
        except OSError as exc:
            log.error("cannot write upload temp file: {error}", error=str(exc))
            self._fail(StretchFSError("cannot store the upload temporarily"))

    def fail(self, error: StretchFSError) -> None:
        """Refuse the upload (e.g. bad session): drop what came and what comes."""
        self._fail(error)
        for part in self.files:
            _unlink(part.path)

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
        if self.error is None and (self._sink is not None or self._in_part):
            self._fail(InvalidInput("multipart body ended inside a part"))
        if self.error is not None:
            raise self.error

    def _drop_open_part(self) -> None:
        if self._sink is not None:
            self._sink.cancel()
            self._sink = None
        if self._path:
            _unlink(self._path)
            self._path = ""

    def cleanup(self) -> None:
        """Remove every temp file (idempotent)."""
        self._closed = True
        self._drop_open_part()
        for part in self.files:
            _unlink(part.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warn("cannot remove temp file {path}: {error}", path=path, error=str(exc))


def parse_buffered(content: BinaryIO | None, content_type: str, tmp_dir: str,
                   max_bytes: int) -> MultipartUpload:
    """Parse a body twisted.web already buffered (requests without UploadRequest)."""
    upload = MultipartUpload(content_type, tmp_dir, max_bytes)
    if content is not None:
        content.seek(0)
        for _ in range(1 << 40):
            data = content.read(BUFFERED_READ_BYTES)
            if not data:
                break
            upload.feed(data)
    return upload


class UploadRequest(LimitedRequest):
    """A Request that streams `POST /content/upload` bodies into a MultipartUpload.

    Class attributes are set by `upload_request_factory`.
    """

    tmp_dir: str = ""
    max_bytes: int = 0
    check_session: Callable[[str | None], Deferred[Any]] | None = None
    reactor: Any = None
    _parsePOSTFormSubmission = False
    stretchfs_upload: MultipartUpload | None = None

    def gotLength(self, length: int | None) -> None:
        """Headers are in: decide whether to stream this body."""
        channel = self.channel
        command = getattr(channel, "_command", b"")
        path = getattr(channel, "_path", b"").split(b"?", 1)[0]
        ctype = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if command.upper() != b"POST" or path != UPLOAD_PATH or \
                not ctype.lower().startswith(b"multipart/form-data"):
            super().gotLength(length)
            return
        import io

        self.content = io.BytesIO()
        upload = MultipartUpload(ctype.decode("latin-1"), self.tmp_dir or tempfile.gettempdir(),
                                 self.max_bytes, offload=self._offload())
        self.stretchfs_upload = upload
        # Whatever happens to the request (answered, refused, cut), its temp files go.
        self.notifyFinish().addBoth(lambda _: upload.cleanup())
        if length is not None and length > self._max_body():
            message = "upload larger than {} bytes".format(self.max_bytes)
            upload.fail(PayloadTooLarge(message))
            self.refuse_now(PayloadTooLarge(message))
            return
        if self.check_session is not None:
            from stretchfs.web.auth import session_token

            d = self.check_session(session_token(self))
            d.addErrback(self._session_refused, upload)

    def _max_body(self) -> int:
        """The largest whole body: one file at the limit plus form fields and framing."""
        return self.max_bytes + MAX_FIELDS_BYTES + 64 * 1024

    def _offload(self) -> Any:
        """(run in thread, pause reading, resume reading), or None without a thread pool."""
        run = thread_runner(self.reactor) if self.reactor is not None else None
        if run is None:
            return None
        transport = self.channel.transport
        return run, transport.pauseProducing, transport.resumeProducing

    def _session_refused(self, failure: Any, upload: MultipartUpload) -> None:
        """No valid session: stop writing, and answer now if the body is still coming."""
        error = failure.value
        if not isinstance(error, StretchFSError):
            error = Unauthorized("invalid session")
        upload.fail(error)
        if not self.body_received:
            self.refuse_now(error)

    def handleContentChunk(self, data: bytes) -> None:
        """Feed the parser (streaming) or buffer as usual."""
        upload = self.stretchfs_upload
        if upload is None:
            super().handleContentChunk(data)
        elif not self.refused:
            upload.feed(data)
            if upload.received > self._max_body():
                message = "upload larger than {} bytes".format(self.max_bytes)
                upload.fail(PayloadTooLarge(message))
                self.refuse_now(PayloadTooLarge(message))

    def connectionLost(self, reason: Any) -> None:
        """The client went away mid-body: remove the upload's temp files.

        Once the whole body is in, the handler owns them (it is cancelled and
        cleans up in its `finally`): removing them here would make the
        replication it is running fail store after store.
        """
        upload = self.stretchfs_upload
        if upload is not None and not self.finished and not self.body_received:
            upload.fail(InvalidInput("connection lost"))
            upload.cleanup()
        super().connectionLost(reason)


def upload_request_factory(tmp_dir: str, max_bytes: int,
                           check_session: Callable[[str | None], Deferred[Any]] | None,
                           reactor: Any = None) -> type[UploadRequest]:
    """A Site `requestFactory` streaming uploads into `tmp_dir`.

    With a `reactor` that has a thread pool, hashing and writing run in it.
    """
    return type("PrismUploadRequest", (UploadRequest,), {
        "tmp_dir": tmp_dir, "max_bytes": max_bytes, "reactor": reactor,
        "check_session": staticmethod(check_session) if check_session else None})
