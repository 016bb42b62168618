"""Users and sessions.

Passwords are bcrypt hashes; hashing and checking run in a thread
(`run_blocking`), never on the reactor.  Login answers the same 401 for an
unknown user and a bad password (an unknown user still costs one bcrypt
check, so timing does not tell them apart) and counts failures per user.
A session is a JSON string with a Redis TTL of `[master] session_ttl`;
its `expires` is checked against the injected clock and pushed forward on
every validate.  Logout deletes the key; deactivating a user deletes all of
its sessions.  An operator (field `operator` "1", set at creation or with
`set_operator`) may also sign in to the master's dashboard.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Callable

import bcrypt
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime

from stretchfs.errors import Conflict, InvalidInput, NotFound, NotReady, Unauthorized
from stretchfs.master import validate
from stretchfs.master.keys import Keys
from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import RedisStore
from stretchfs.wire.identifiers import TOKEN_ALPHABET, is_session_token, is_username, new_token

BCRYPT_THREADS = 4  # of the reactor's 10 pool threads
BCRYPT_MAX_WAITING = 200
PASSWORD_LENGTH = 32
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
MAX_SESSION_DATA_BYTES = 64 * 1024
BAD_LOGIN = "invalid username or password"
BAD_SESSION = "invalid or expired session"
NOT_OPERATOR = "not an operator"

RunBlocking = Callable[..., "Deferred[Any]"]

# KEYS[1] user HASH, KEYS[2] username SET; ARGV: username, hash, now, operator ("1"/"0")
# -> 1 created, 0 exists
CREATE = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'username', ARGV[1], 'password', ARGV[2], 'active', '1',
           'created', ARGV[3], 'failed_logins', '0', 'operator', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
""")

# KEYS[1] user HASH, KEYS[2] the user's session SET; ARGV[1] session key prefix -> 1 or 0
DEACTIVATE = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'active', '0')
for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('DEL', ARGV[1] .. t) end
redis.call('DEL', KEYS[2])
return 1
""")


def random_text(length: int) -> str:
    """`length` random letters and digits from `secrets`."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("'{}' must be true or false".format(name))
    return value


def _password(value: object) -> str:
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InvalidInput("'password' must be a string of 1-{} bytes".format(
            MAX_PASSWORD_BYTES))
    return value


class Users:
    """Users and their sessions on the cluster Redis."""

    def __init__(self, redis: RedisStore, keys: Keys, clock: IReactorTime, *, session_ttl: float,
                 bcrypt_rounds: int, run_blocking: RunBlocking,
                 on_login_failure: Callable[[str], None] = lambda reason: None) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.session_ttl = session_ttl
        self.rounds = bcrypt_rounds
        self._run_blocking = run_blocking
        self._bcrypt_slots = DeferredSemaphore(BCRYPT_THREADS)
        self._on_login_failure = on_login_failure
        self._dummy_hash: bytes | None = None

    async def _bcrypt(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run bcrypt work in the thread pool, at most BCRYPT_THREADS at a time; past
        BCRYPT_MAX_WAITING queued, NotReady (503): a login flood must neither queue
        without bound nor take every pool thread from other blocking work."""
        slots = self._bcrypt_slots
        if slots.tokens == 0 and len(slots.waiting) >= BCRYPT_MAX_WAITING:
            raise NotReady("too many password checks at once; retry shortly")
        return await slots.run(self._run_blocking, function, *args)

    async def _hash(self, password: str) -> bytes:
        salt = bcrypt.gensalt(self.rounds)
        return await self._bcrypt(bcrypt.hashpw, password.encode("utf-8"), salt)

    async def _check(self, password: str, hashed: bytes) -> bool:
        def check() -> bool:
            try:
                return bcrypt.checkpw(password.encode("utf-8"), hashed)
            except ValueError:
                return False
        return bool(await self._bcrypt(check))

    # -- users -------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> dict[str, str | bool]:
        """Create a user; the password is generated when not given."""
        username = validate.username(body.get("username"))
        operator = _flag(body.get("operator", False), "operator")
        given = body.get("password")
        password = random_text(PASSWORD_LENGTH) if given is None else _password(given)
        if await self.redis.execute("EXISTS", self.keys.user(username)):
            raise Conflict("user {} already exists".format(username))
        hashed = await self._hash(password)
        created = await CREATE.run(self.redis, [self.keys.user(username), self.keys.users],
                                   [username, hashed, repr(float(self.clock.seconds())),
                                    "1" if operator else "0"], durable=True)
        if not int(created):
            raise Conflict("user {} already exists".format(username))
        return {"username": username, "password": password, "operator": operator}

    async def set_operator(self, username: str, operator: object) -> dict[str, Any]:
        """Grant or revoke the operator flag (a revoked operator's dashboard sessions end
        at their next request)."""
        validate.username(username)
        flag = _flag(operator, "operator")
        if not await self.redis.execute("EXISTS", self.keys.user(username)):
            raise NotFound("no user named {}".format(username))
        await self.redis.execute("HSET", self.keys.user(username), "operator",
                                 "1" if flag else "0")
        return {"username": username, "operator": flag}

    async def is_operator(self, username: str) -> bool:
        """Whether `username` is an active operator now."""
        active, operator = await self.redis.execute("HMGET", self.keys.user(username),
                                                    "active", "operator")
        return active == b"1" and operator == b"1"

    async def list(self) -> list[dict[str, Any]]:
        """Every user without password hashes, sorted by name."""
        names = sorted(text(n) for n in await self.redis.execute("SMEMBERS", self.keys.users))
        if not names:
            return []
        replies = await self.redis.pipeline(
            [("HMGET", self.keys.user(n), "active", "created", "failed_logins", "operator")
             for n in names])
        users = []
        for name, (active, created, failed, operator) in zip(names, replies):
            if active is None:
                continue
            users.append({"username": name, "active": active == b"1",
                          "created": float(created or 0), "failed_logins": int(failed or 0),
                          "operator": operator == b"1"})
        return users

    async def deactivate(self, username: str) -> dict[str, Any]:
        """Deactivate a user and end every session it has."""
        validate.username(username)
        done = await DEACTIVATE.run(self.redis, [self.keys.user(username),
                                                 self.keys.user_sessions(username)],
                                    [self.keys.session("")], durable=True)
        if not int(done):
            raise NotFound("no user named {}".format(username))
        return {"username": username, "active": False}

    # -- login and sessions ----------------------------------------------------
    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check credentials and open a session."""
        username = body.get("username")
        password = body.get("password")
        ip = validate.text(body.get("ip") or "", "ip", 64)
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidInput("expected 'username' and 'password' strings")
        await self.authenticate(username, password)
        now = self.clock.seconds()
        session = {"token": new_token(), "username": username, "ip": ip,
                   "data": {}, "created": now, "expires": now + self.session_ttl}
        await self._save(session, create=True)
        return session

    async def authenticate_operator(self, username: str, password: str) -> None:
        """Raise Unauthorized unless these are the credentials of an active operator."""
        await self.authenticate(username, password)
        if not await self.is_operator(username):
            self._on_login_failure("not_operator")
            raise Unauthorized(NOT_OPERATOR)

    async def pace(self) -> None:
        """Spend one password check's time, under the same limit as a real one (a
        login by other means is as slow, and as bounded, as a password login)."""
        await self._check(random_text(PASSWORD_LENGTH), await self._dummy())

    async def authenticate(self, username: str, password: str) -> None:
        """Raise Unauthorized unless `password` is the active user `username`'s."""
        known = is_username(username)
        stored = None
        if known:
            stored = await self.redis.execute("HMGET", self.keys.user(username), "password",
                                              "active")
        if not stored or stored[0] is None:
            await self._check(password, await self._dummy())
            self._on_login_failure("unknown_user")
            raise Unauthorized(BAD_LOGIN)
        if not await self._check(password, stored[0]):
            await self.redis.execute("HINCRBY", self.keys.user(username), "failed_logins", 1)
            self._on_login_failure("bad_password")
            raise Unauthorized(BAD_LOGIN)
        if stored[1] != b"1":
            self._on_login_failure("inactive")
            raise Unauthorized("user is deactivated")

    async def _dummy(self) -> bytes:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(random_text(PASSWORD_LENGTH))
        return self._dummy_hash

    async def _save(self, session: dict[str, Any], create: bool = False) -> bool:
        encoded = json.dumps(session, separators=(",", ":"))
        ttl = max(1, int(self.session_ttl))
        key = self.keys.session(session["token"])
        if create:
            await self.redis.pipeline([
                ("SET", key, encoded, "EX", ttl),
                ("SADD", self.keys.user_sessions(session["username"]), session["token"]),
                ("EXPIRE", self.keys.user_sessions(session["username"]), ttl)])
            return True
        # XX: a logout that happened meanwhile is never undone
        saved, _ = await self.redis.pipeline([
            ("SET", key, encoded, "EX", ttl, "XX"),
            ("EXPIRE", self.keys.user_sessions(session["username"]), ttl)])
        return saved is not None

    async def session(self, token: object) -> dict[str, Any]:
        """The live session of `token` (Unauthorized when unknown, expired or logged out)."""
        if not isinstance(token, str):
            raise InvalidInput("expected 'token': the session token string")
        if not is_session_token(token):
            raise Unauthorized(BAD_SESSION)
        raw = await self.redis.execute("GET", self.keys.session(token))
        if raw is None:
            raise Unauthorized(BAD_SESSION)
        session = json.loads(raw)
        if float(session["expires"]) <= self.clock.seconds():
            await self.redis.execute("DEL", self.keys.session(token))
            raise Unauthorized(BAD_SESSION)
        return session

    async def validate(self, token: object) -> dict[str, Any]:
        """The session, with its inactivity deadline pushed forward."""
        session = await self.session(token)
        active = await self.redis.execute("HGET", self.keys.user(session["username"]), "active")
        if active != b"1":
            raise Unauthorized(BAD_SESSION)
        session["expires"] = self.clock.seconds() + self.session_ttl
        if not await self._save(session):
            raise Unauthorized(BAD_SESSION)
        return session

    async def update(self, token: object, data: object) -> dict[str, Any]:
        """Replace the session's `data` object."""
        if not isinstance(data, dict):
            raise InvalidInput("'data' must be an object")
        if len(json.dumps(data)) > MAX_SESSION_DATA_BYTES:
            raise InvalidInput("'data' is larger than {} bytes".format(MAX_SESSION_DATA_BYTES))
        session = await self.validate(token)
        session["data"] = data
        if not await self._save(session):
            raise Unauthorized(BAD_SESSION)
        return session

    async def logout(self, token: object) -> None:
        """End a session (idempotent)."""
        if not is_session_token(token):
            raise InvalidInput("'token' must be 64 letters or digits")
        raw = await self.redis.execute("GET", self.keys.session(token))
        commands: list[Any] = [("DEL", self.keys.session(token))]
        if raw is not None:
            username = json.loads(raw).get("username", "")
            commands.append(("SREM", self.keys.user_sessions(username), token))
        await self.redis.pipeline(commands)

    async def reset_password(self, token: object) -> str:
        """Give the session's user a new generated password; returns it."""
        session = await self.validate(token)
        password = random_text(PASSWORD_LENGTH)
        hashed = await self._hash(password)
        await self.redis.execute_durable("HSET", self.keys.user(session["username"]), "password",
                                         hashed)
        return password

    async def count(self) -> int:
        """How many users exist."""
        return int(await self.redis.execute("SCARD", self.keys.users))
