"""Sign-in to the master's dashboard: an operator account or the cluster key.

A successful sign-in opens a dashboard session: a random token in an
HttpOnly, SameSite=Strict cookie (Secure when the request came over TLS)
whose record (`<prefix>dash:<token>`, JSON: who, user, csrf, expires) lives
in Redis for `SESSION_SECONDS`.  An operator's session ends as soon as the
user is deactivated or loses the operator flag (checked on every request).

Forms that change state carry a CSRF token: the sign-in form the one of a
short-lived `sfs_csrf` cookie set with the form (double submit), the
sign-out form the session's own.  A sign-in costs one bcrypt check whatever
the method (the cluster key too) and runs under the users' bcrypt limit, so
guessing is as slow, and as bounded, as for a password login.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from stretchfs.errors import Forbidden, Unauthorized
from stretchfs.master.keys import Keys
from stretchfs.master.users import Users
from stretchfs.redisstore import RedisStore
from stretchfs.web.auth import bearer_token
from stretchfs.wire.identifiers import is_session_token, is_username, new_token

SESSION_SECONDS = 8 * 3600
LOGIN_FORM_SECONDS = 3600
SESSION_COOKIE = b"sfs_dash"
CSRF_COOKIE = b"sfs_csrf"
BAD_SIGN_IN = "invalid operator name, password or cluster key"


def form_field(request: IRequest, name: str) -> str:
    """A field of a posted form (urlencoded), "" when absent or not text."""
    values = (request.args or {}).get(name.encode("ascii")) or [b""]
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _cookie(request: IRequest, name: bytes, value: str, max_age: int) -> None:
    request.addCookie(name, value.encode("ascii"), path=b"/", max_age=str(max_age).encode(),
                      httpOnly=True, secure=bool(request.isSecure()),  # type: ignore[call-arg]
                      sameSite="strict")


class DashboardSessions:
    """Dashboard sessions on the cluster Redis."""

    def __init__(self, redis: RedisStore, keys: Keys, clock: IReactorTime, users: Users,
                 cluster_key: str) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._users = users
        self._cluster_key = cluster_key

    def login_form_token(self, request: IRequest) -> str:
        """A fresh CSRF token for the sign-in form, also set as its cookie."""
        token = new_token()
        _cookie(request, CSRF_COOKIE, token, LOGIN_FORM_SECONDS)
        return token

    async def sign_in(self, request: IRequest) -> None:
        """Check the posted form and open a session (its cookie set on `request`)."""
        sent = form_field(request, "csrf")
        expected = (request.getCookie(CSRF_COOKIE) or b"").decode("latin-1")
        if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden("the sign-in form expired or came from another site; reload it")
        username = form_field(request, "username").strip()
        password = form_field(request, "password")
        if username:
            if not is_username(username):
                await self._users.pace()
                raise Unauthorized(BAD_SIGN_IN)
            try:
                await self._users.authenticate_operator(username, password)
            except Unauthorized:
                raise Unauthorized(BAD_SIGN_IN) from None
            who = "operator " + username
        else:
            await self._users.pace()
            if not hmac.compare_digest(password.encode("utf-8"),
                                       self._cluster_key.encode("utf-8")):
                raise Unauthorized(BAD_SIGN_IN)
            who = "cluster key"
        token = new_token()
        record = {"who": who, "user": username or None, "csrf": new_token(),
                  "expires": self._clock.seconds() + SESSION_SECONDS}
        await self._redis.execute("SET", self._keys.dashboard_session(token),
                                  json.dumps(record), "EX", SESSION_SECONDS)
        _cookie(request, SESSION_COOKIE, token, SESSION_SECONDS)
        _cookie(request, CSRF_COOKIE, "", 0)

    async def session(self, request: IRequest) -> dict[str, Any] | None:
        """The live session of the request's cookie, None without one."""
        token = (request.getCookie(SESSION_COOKIE) or b"").decode("latin-1")
        if not is_session_token(token):
            return None
        raw = await self._redis.execute("GET", self._keys.dashboard_session(token))
        if raw is None:
            return None
        record = json.loads(raw)
        if float(record["expires"]) <= self._clock.seconds() or (
                record["user"] and not await self._users.is_operator(record["user"])):
            await self._redis.execute("DEL", self._keys.dashboard_session(token))
            return None
        record["token"] = token
        return record

    async def require(self, request: IRequest) -> dict[str, Any]:
        """The session, or the cluster key as a bearer token; else Unauthorized."""
        key = bearer_token(request)
        if key is not None and hmac.compare_digest(key.encode("utf-8"),
                                                   self._cluster_key.encode("utf-8")):
            return {"who": "cluster key", "user": None, "csrf": ""}
        session = await self.session(request)
        if session is None:
            raise Unauthorized("sign in to the dashboard first")
        return session

    async def sign_out(self, request: IRequest) -> None:
        """End the request's session when the form carries its CSRF token."""
        session = await self.session(request)
        if session is None:
            return
        if not hmac.compare_digest(form_field(request, "csrf").encode(),
                                   session["csrf"].encode()):
            raise Forbidden("the sign-out form came from another site")
        await self._redis.execute("DEL", self._keys.dashboard_session(session["token"]))
        _cookie(request, SESSION_COOKIE, "", 0)
