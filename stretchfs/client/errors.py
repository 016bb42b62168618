"""Exceptions of the Python client, named after what happened."""

from __future__ import annotations


class StretchFSError(Exception):
    """Any failure of a StretchFS call; `status` is the HTTP status (0 without an answer)."""

    status = 0

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(StretchFSError):
    """The server refused the request as malformed (400, 413, 414, 416)."""

    status = 400


class Unauthorized(StretchFSError):
    """No valid session: wrong credentials, or a session that cannot be renewed (401)."""

    status = 401


class Forbidden(StretchFSError):
    """The request is understood and not allowed (403), e.g. a referrer not on the list."""

    status = 403


class NotFound(StretchFSError):
    """Unknown content, or an unknown, expired or someone else's purchase (404)."""

    status = 404


class Conflict(StretchFSError):
    """The request conflicts with the cluster's state (409)."""

    status = 409


class Unavailable(StretchFSError):
    """The cluster cannot answer now (503, or no connection: status 0); retrying may work."""

    status = 503


class InsufficientStorage(StretchFSError):
    """No store has room for the upload (507)."""

    status = 507


class IntegrityError(StretchFSError):
    """The bytes sent or received do not hash to what the server reported."""


class ServerError(StretchFSError):
    """Any other answer (500 and unexpected codes)."""

    status = 500


_BY_STATUS: dict[int, type[StretchFSError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: BadRequest, 414: BadRequest, 416: BadRequest, 503: Unavailable,
    507: InsufficientStorage,
}


def error_for(status: int, message: str) -> StretchFSError:
    """The exception for an HTTP error answer."""
    return _BY_STATUS.get(status, ServerError)(message, status)
