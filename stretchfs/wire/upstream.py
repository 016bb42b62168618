"""One translation of another role's failure into this role's own answer.

A call to another role fails with `PeerUnavailable` (unreachable, stalled) or
`UpstreamError` (a non-2xx answer).  A role that answers its own client with
such a failure goes through `translate`: a client error (400, 401, 403, 404,
409, 413) keeps its meaning and the other role's `error` text; anything else
is this role's 503 (`NotReady`), naming the peer and what could not be done.
"""

from __future__ import annotations

import json
from typing import Awaitable, TypeVar

from stretchfs import errors

T = TypeVar("T")

CLIENT_ERRORS: dict[int, type[errors.StretchFSError]] = {
    400: errors.InvalidInput, 401: errors.Unauthorized, 403: errors.Forbidden,
    404: errors.NotFound, 409: errors.Conflict, 413: errors.PayloadTooLarge}


def error_text(body: bytes) -> str:
    """The `error` field of a JSON error body, '' when it has none."""
    try:
        value = json.loads(body)
    except (ValueError, TypeError):
        return ""
    return str(value.get("error") or "") if isinstance(value, dict) else ""


def translate(exc: errors.PeerUnavailable | errors.UpstreamError, peer: str,
              what: str) -> errors.StretchFSError:
    """This role's answer to `exc`, raised while asking `peer` to `what`."""
    if isinstance(exc, errors.PeerUnavailable):
        return errors.NotReady("{} unreachable: cannot {}".format(peer, what))
    kind = CLIENT_ERRORS.get(exc.code)
    if kind is None:
        return errors.NotReady("{} answered {} to {}".format(peer, exc.code, what))
    return kind(error_text(exc.body) or what)


async def relay(call: Awaitable[T], peer: str, what: str) -> T:
    """Await a call to `peer`; its failure is raised as `translate` answers it."""
    try:
        return await call
    except (errors.PeerUnavailable, errors.UpstreamError) as exc:
        raise translate(exc, peer, what) from None
