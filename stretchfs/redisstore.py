"""Access to the cluster Redis.

Role code sees only `RedisStore`: raw commands (`execute`) and pipelines
(`pipeline`), each returning a Deferred of the decoded reply (bulk strings
stay `bytes`; numbers are never guessed).  `TxRedisStore` implements it with
a txredisapi lazy connection pool.  Every call has its own deadline, so a
Redis that is down fails fast with `RedisUnavailable` instead of hanging
(txredisapi's lazy pool would otherwise wait for a reconnect forever).

txredisapi (like klein) installs the global reactor when imported, so it is
only imported inside `connect_redis`, never at module import time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from stretchfs.errors import ConfigError, NotReady

if TYPE_CHECKING:
    from stretchfs.config import RedisSettings

Arg = bytes | str | int | float
Command = Sequence[Arg]

log = Logger()


# Error replies that mean "Redis cannot serve now" rather than "bad command":
# loading its data, a script running too long, a read-only replica after a
# failover, persistence failing, out of memory.  They answer 503 like an outage.
UNAVAILABLE_REPLIES = frozenset({"LOADING", "BUSY", "READONLY", "MISCONF", "OOM",
                                 "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"})


class RedisUnavailable(NotReady):
    """The cluster Redis did not answer (down, unreachable or too slow)."""


class RedisReplyError(Exception):
    """Redis answered a command with an error (a bug on our side)."""


class RedisStore(Protocol):
    """The commands StretchFS sends to the cluster Redis."""

    def execute(self, *args: Arg) -> Deferred[Any]:
        """Send one command; fires with its reply."""

    def pipeline(self, commands: Sequence[Command]) -> Deferred[list[Any]]:
        """Send several commands in one round trip; fires with their replies."""

    def close(self) -> Deferred[None]:
        """Disconnect; fires once the connections are closed."""


@dataclass(frozen=True)
class RedisAddress:
    """Where the cluster Redis listens."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    unix_path: str = ""
    password: str | None = None
    username: str | None = None

    def url(self) -> str:
        """This address as a redis:// or unix:// URL."""
        if self.unix_path:
            return "unix://{}?db={}".format(self.unix_path, self.db)
        return "redis://{}:{}/{}".format(self.host, self.port, self.db)


def parse_redis_url(url: str) -> RedisAddress:
    """Parse redis://[[user][:password]@]host:port/db or unix://[[user][:password]@]/path?db=N.

    A user name selects a Redis ACL user (Redis >= 6, see stretchfs/devcluster/redisacl.py).
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    query = parse_qs(parts.query)
    try:
        if parts.scheme == "unix":
            db = int(query.get("db", ["0"])[0])
            if not parts.path:
                raise ValueError("no socket path")
            return RedisAddress(unix_path=parts.path, db=db, password=password,
                                username=username)
        if parts.scheme == "redis":
            path = parts.path.strip("/")
            db = int(path) if path else int(query.get("db", ["0"])[0])
            return RedisAddress(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                                db=db, password=password, username=username)
    except ValueError as exc:
        raise ConfigError("{}: bad Redis URL: {}".format(url, exc)) from None
    raise ConfigError("{}: bad Redis URL: expected redis:// or unix://".format(url))


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, bool):
        raise TypeError("booleans are not Redis arguments")
    if isinstance(arg, float):
        return repr(arg).encode("ascii")
    return str(arg).encode("ascii")


class TxRedisStore:
    """`RedisStore` over a txredisapi lazy pool, with per-call deadlines."""

    def __init__(self, handler: Any, clock: IReactorTime, timeout: float) -> None:
        self._handler = handler
        self._clock = clock
        self._timeout = timeout

    def _guard(self, d: Deferred[Any]) -> Deferred[Any]:
        import txredisapi

        def translate(failure: Failure) -> Failure:
            if failure.check(txredisapi.ResponseError):
                message = str(failure.value)
                if message.split(" ", 1)[0].upper() in UNAVAILABLE_REPLIES:
                    raise RedisUnavailable("cluster Redis unavailable: {}".format(message[:200]))
                raise RedisReplyError(message)
            if failure.check(txredisapi.ConnectionError, DeferredTimeout, ConnectionError):
                raise RedisUnavailable("cluster Redis unavailable")
            return failure

        d.addTimeout(self._timeout, self._clock)
        d.addErrback(translate)
        return d

    def execute(self, *args: Arg) -> Deferred[Any]:
        """Send one command; fires with its reply."""
        encoded = [_encode(arg) for arg in args]
        return self._guard(self._handler.execute_command(*encoded))

    def pipeline(self, commands: Sequence[Command]) -> Deferred[list[Any]]:
        """Send several commands in one round trip; fires with their replies."""
        encoded = [[_encode(arg) for arg in command] for command in commands]

        def send(connection: Any) -> Deferred[list[Any]]:
            for command in encoded:
                connection.execute_command(*command)
            return connection.execute_pipeline()

        d = self._handler.pipeline()
        d.addCallback(send)
        return self._guard(d)

    def close(self) -> Deferred[None]:
        """Disconnect the pool."""
        return self._handler.disconnect()


def _keep_trying() -> Deferred[None]:
    return succeed(None)


def connect_redis(address: RedisAddress, clock: IReactorTime, timeout: float,
                  pool_size: int = 4) -> TxRedisStore:
    """Open a lazy, reconnecting txredisapi pool to `address`."""
    import txredisapi

    # db 0 is every connection's default: no SELECT, one less step to fail.
    # With a user name txredisapi sends Redis 6's `AUTH user password`.
    options = dict(dbid=address.db or None, poolsize=pool_size, reconnect=True, charset=None,
                   username=address.username, password=address.password,
                   connectTimeout=timeout, replyTimeout=timeout, convertNumbers=False)
    if address.unix_path:
        handler = txredisapi.lazyUnixConnectionPool(path=address.unix_path, **options)
    else:
        handler = txredisapi.lazyConnectionPool(host=address.host, port=address.port, **options)
    factory = handler._factory
    factory.maxDelay = 2.0
    factory.initialDelay = 0.2
    # txredisapi gives up reconnecting for good when AUTH or SELECT fails on a
    # new connection -- including a timeout against a Redis that hangs (SIGSTOP,
    # swapping).  The cluster must recover without a restart: keep trying.
    # (disconnect() still stops everything; it does not go through stopTrying.)
    factory.stopTrying = _keep_trying
    # A refused login (wrong ACL user or password) or SELECT fails the pool's
    # first-ready Deferred, which nothing else waits on: say why, once.
    factory.deferred.addErrback(_setup_refused)
    return TxRedisStore(handler, clock, timeout)


def _setup_refused(failure: Failure) -> None:
    log.error("cluster Redis refused the connection setup: {why}",
              why=failure.getErrorMessage()[:200], event="redis_refused")


def connect_cluster_redis(settings: RedisSettings, clock: IReactorTime) -> TxRedisStore:
    """The pool a role opens from its `[redis]` settings (a password there wins over the URL's)."""
    address = parse_redis_url(settings.url)
    if settings.password:
        address = replace(address, password=settings.password)
    return connect_redis(address, clock, settings.timeout, pool_size=settings.pool_size)
