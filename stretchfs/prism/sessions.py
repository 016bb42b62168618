"""Session checks: validated against the master, cached for a few seconds.

A logout or an expiry stops a token on every prism within
`[prism] session_cache_ttl` seconds (2 s by default; the contract is 5 s).
A logout through this prism drops the token from its cache at once.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from stretchfs.errors import NotReady, PeerUnavailable, Unauthorized, UpstreamError
from stretchfs.web.auth import session_token
from stretchfs.wire.identifiers import is_session_token
from stretchfs.wire.protocols import SessionSource
from stretchfs.wire.upstream import translate

log = Logger()

MAX_CACHED_SESSIONS = 100_000


class SessionCache:
    """token -> session, validated by the master, kept `ttl` seconds."""

    def __init__(self, master: SessionSource, clock: IReactorTime, ttl: float) -> None:
        self._master = master
        self._clock = clock
        self._ttl = ttl
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def validate(self, token: str | None) -> dict[str, Any]:
        """The session of `token`; Unauthorized when invalid, NotReady if unverifiable."""
        if not token:
            raise Unauthorized("session token required (X-STRETCHFS-Token)")
        if not is_session_token(token):
            raise Unauthorized("invalid session token")
        now = self._clock.seconds()
        hit = self._cache.get(token)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            session = await self._master.validate_session(token)
        except (UpstreamError, PeerUnavailable) as exc:
            answer = translate(exc, "master", "validate the session")
            if isinstance(answer, NotReady):
                return self._stale(hit, now, answer)
            self._cache.pop(token, None)
            raise Unauthorized("invalid session") from None
        if not isinstance(session, dict):
            raise Unauthorized("invalid session")
        self._cache[token] = (now, session)
        self._cache.move_to_end(token)
        while len(self._cache) > MAX_CACHED_SESSIONS:
            self._cache.popitem(last=False)
        return session

    def _stale(self, hit: tuple[float, dict[str, Any]] | None, now: float,
               why: NotReady) -> dict[str, Any]:
        """While the master is away, a session it validated before stays good until its
        own expiry (uploads go on during a master outage); an unknown one is `why`, a 503."""
        if hit is not None and _expires(hit[1]) > now:
            log.debug("session served from cache: {why}", why=str(why))
            return hit[1]
        raise why

    def forget(self, token: str) -> None:
        """Drop `token` from the cache (logout through this prism)."""
        self._cache.pop(token, None)

    def remember(self, token: str, session: dict[str, Any]) -> None:
        """Cache a session the master just returned (login, update)."""
        self._cache[token] = (self._clock.seconds(), session)


def _expires(session: dict[str, Any]) -> float:
    try:
        return float(session.get("expires") or 0)
    except (TypeError, ValueError):
        return 0.0


def session_required(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Validate the request's session (`self.sessions`) and pass it as `session=`."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: IRequest, *args: Any, **kwargs: Any) -> Any:
        token = session_token(request)
        session = await self.sessions.validate(token)
        session = dict(session)
        session.setdefault("token", token)
        result = handler(self, request, *args, session=session, **kwargs)
        if hasattr(result, "__await__"):
            result = await result
        return result

    return wrapper
