"""Authentication decorators, stacked under `@app.route`."""

from __future__ import annotations

import functools
import hmac
from typing import Any, Callable

from twisted.web.iweb import IRequest

from stretchfs.errors import Unauthorized

SESSION_HEADERS = (b"x-stretchfs-token", b"x-oose-token")


def bearer_token(request: IRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    header = request.getHeader(b"authorization")
    if not header or not header.lower().startswith(b"bearer "):
        return None
    return header[7:].strip().decode("latin-1")


def session_token(request: IRequest) -> str | None:
    """The session token from X-STRETCHFS-Token (or X-OOSE-Token), if any."""
    for name in SESSION_HEADERS:
        value = request.getHeader(name)
        if value:
            return value.strip().decode("latin-1")
    return None


def check_cluster_key(request: IRequest, cluster_key: str) -> None:
    """Raise Unauthorized unless the request carries `cluster_key`."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("cluster key required")
    if not hmac.compare_digest(token.encode("utf-8"), cluster_key.encode("utf-8")):
        raise Unauthorized("invalid cluster key")


def cluster_key_required(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse the request unless it carries the cluster key (`self.cluster_key`)."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: IRequest, *args: Any, **kwargs: Any) -> Any:
        check_cluster_key(request, self.cluster_key)
        return handler(self, request, *args, **kwargs)

    return wrapper
