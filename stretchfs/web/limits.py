"""A Request that refuses oversized bodies without buffering them.

twisted.web's `Request` stores a whole body (to a temp file past 100 KB)
before any handler, auth check or size check runs, so an unauthenticated
client could fill the disk with one request.  `LimitedRequest` stops storing
once the body passes the site's `max_body` (declared length or bytes seen,
so chunked bodies are caught too); `jsonio.read_body` then answers 413.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.web.server import Request


class LimitedRequest(Request):
    """Keeps at most `channel.site.max_body` bytes of a request body."""

    body_too_large = False
    _body_limit: int | None = None
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:
        """Refuse at once a declared length over the limit; otherwise buffer as usual."""
        site = getattr(self.channel, "site", None)
        self._body_limit = getattr(site, "max_body", None)
        self._body_seen = 0
        if self._body_limit is not None and length is not None and length > self._body_limit:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Store a chunk unless the body has grown past the limit."""
        if self.body_too_large:
            return
        self._body_seen += len(data)
        if self._body_limit is not None and self._body_seen > self._body_limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self.body_too_large = True
        previous: Any = self.content
        self.content = io.BytesIO()
        if previous is not None:
            previous.close()
