"""Domain exceptions shared by every role; `web.errormap` maps them to HTTP."""

from __future__ import annotations


class StretchFSError(Exception):
    """Base class of every domain error; `str(exc)` is safe to show a client."""


class InvalidInput(StretchFSError):
    """The request is malformed: missing field, wrong type, bad hash..."""


class Unauthorized(StretchFSError):
    """No session or cluster key, or an invalid one."""


class Forbidden(StretchFSError):
    """Authenticated, but not allowed (referrer, expired signature...)."""


class NotFound(StretchFSError):
    """The thing asked for does not exist (and we are sure of it)."""


class Conflict(StretchFSError):
    """The request conflicts with the current state."""


class Gone(StretchFSError):
    """The thing existed but is no longer kept (e.g. a trimmed feed cursor)."""


class PayloadTooLarge(StretchFSError):
    """The request body is larger than the configured limit."""


class RangeNotSatisfiable(StretchFSError):
    """The requested byte range lies outside the content."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class NotReady(StretchFSError):
    """The service is up but not ready (syncing state, master unreachable)."""


class PeerUnavailable(StretchFSError):
    """A peer (master, prism, store) could not be reached or is marked down."""


class PeerRefused(PeerUnavailable):
    """The connection to a peer was refused: the request never reached it."""


class TlsRejected(PeerUnavailable):
    """The TLS handshake with a peer failed (certificate not trusted, wrong name, expired...)."""


class InsufficientStorage(StretchFSError):
    """The disk is too full to accept the content."""


class UpstreamError(StretchFSError):
    """Another role answered with a non-2xx status."""

    def __init__(self, code: int, body: bytes, url: str = "") -> None:
        super().__init__("upstream {} answered {}".format(url or "peer", code))
        self.code = code
        self.body = body
        self.url = url


class ConfigError(StretchFSError):
    """A configuration file is missing, unreadable or invalid."""
