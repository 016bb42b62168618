"""Map domain exceptions to HTTP status codes and `{"error": ...}` bodies."""

from __future__ import annotations

from typing import Any, cast

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from stretchfs import errors
from stretchfs.web.jsonio import write_json

log = Logger()

STATUS_BY_ERROR: list[tuple[type[Exception], int]] = [
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Gone, 410),
    (errors.PayloadTooLarge, 413),
    (errors.RangeNotSatisfiable, 416),
    (errors.NotReady, 503),
    (errors.PeerUnavailable, 503),
    (errors.InsufficientStorage, 507),
    (errors.UpstreamError, 502),
]


def status_for(exc: BaseException) -> int | None:
    """The HTTP status of a domain exception, None for anything else."""
    for kind, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return code
    return None


def render_failure(request: IRequest, failure: Failure) -> bytes:
    """Answer a failed request: domain errors by the table, others as 500."""
    exc = cast(BaseException, failure.value)  # a Failure always holds one
    if isinstance(exc, HTTPException):
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            request.setHeader(b"Allow", ", ".join(exc.valid_methods).encode())
        return write_json(request, {"error": (exc.name or "error").lower()}, exc.code or 500)
    if status_for(exc) is None:
        log.failure("unhandled error on {method} {path}", failure,
                    method=request.method, path=request.path)
    return render_error(request, exc)


def render_error(request: IRequest, exc: BaseException) -> bytes:
    """Answer `exc`: a domain error by the table, anything else as a bare 500."""
    code = status_for(exc)
    if code is None:
        return write_json(request, {"error": "internal error"}, 500)
    if code == 416:
        size = getattr(exc, "size", 0)
        request.setHeader(b"Content-Range", "bytes */{}".format(size).encode())
    if code == 401:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="stretchfs"')
    return write_json(request, {"error": str(exc) or exc.__class__.__name__}, code)


def install_error_handlers(app: Klein) -> None:
    """Route every exception raised by `app`'s handlers through `render_failure`."""

    @app.handle_errors(Exception)
    def _on_error(self: Any, request: IRequest, failure: Failure) -> bytes:
        return render_failure(request, failure)
