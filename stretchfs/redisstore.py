"""Access to the cluster Redis.

Role code sees only `RedisStore`: raw commands (`execute`) and pipelines
(`pipeline`), each returning a Deferred of the decoded reply (bulk strings
stay `bytes`; numbers are never guessed).  `TxRedisStore` implements it with
a txredisapi lazy connection pool.  Every call has its own deadline, so a
Redis that is down fails fast with `RedisUnavailable` instead of hanging
(txredisapi's lazy pool would otherwise wait for a reconnect forever).

Behind Redis Sentinel (`connect_sentinel`), txredisapi asks the Sentinels
for the primary before every connection attempt and drops connections to a
server that is no longer the primary; a READONLY reply (a demoted primary
still holding our connection) drops the pool's connections too, so the next
call goes to the new primary.  `execute_durable` sends a write and Redis's
WAIT on the same connection: a write that must survive the primary's death
is acknowledged only once `min_replica_acks` replicas hold it.

txredisapi (like klein) installs the global reactor when imported, so it is
only imported inside `connect_redis`, never at module import time.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred, FirstError, succeed
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
# failover, persistence failing, out of memory, too few replicas for
# min-replicas-to-write.  They answer 503 like an outage.
UNAVAILABLE_REPLIES = frozenset({"LOADING", "BUSY", "READONLY", "MISCONF", "OOM",
                                 "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"})


class RedisUnavailable(NotReady):
    """The cluster Redis did not answer (down, unreachable or too slow)."""


class ReplicasBehind(RedisUnavailable):
    """A write reached the primary but fewer replicas than required confirmed it in time
    (it may still be applied: the caller answers 503 and the client retries)."""


class RedisReplyError(Exception):
    """Redis answered a command with an error (a bug on our side)."""


class RedisStore(Protocol):
    """The commands StretchFS sends to the cluster Redis."""

    def execute(self, *args: Arg) -> Deferred[Any]:
        """Send one command; fires with its reply."""

    def pipeline(self, commands: Sequence[Command]) -> Deferred[list[Any]]:
        """Send several commands in one round trip; fires with their replies."""

    def execute_durable(self, *args: Arg) -> Deferred[Any]:
        """Send one write; fires with its reply once `min_replica_acks` replicas hold it
        (else fails with `ReplicasBehind`)."""

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

    def __init__(self, handler: Any, clock: IReactorTime, timeout: float, *,
                 min_replica_acks: int = 0, follow_failover: bool = False,
                 sentinels: Any = None) -> None:
        self._handler = handler
        self._clock = clock
        self._timeout = timeout
        self._acks = min_replica_acks
        self._follow = follow_failover
        self._sentinels = sentinels

    def _rediscover(self) -> None:
        """Drop every pooled connection: each reconnect asks the Sentinels for the primary."""
        for connection in list(self._handler._factory.pool):
            connection.transport.loseConnection()

    def _guard(self, d: Deferred[Any]) -> Deferred[Any]:
        import txredisapi

        def translate(failure: Failure) -> Failure:
            if isinstance(failure.value, FirstError):
                failure = failure.value.subFailure
            if failure.check(txredisapi.ResponseError):
                message = str(failure.value)
                word = message.split(" ", 1)[0].upper()
                if word in UNAVAILABLE_REPLIES:
                    if word == "READONLY" and self._follow:
                        log.info("the Redis we reached is no longer the primary: asking the "
                                 "Sentinels again", event="redis_readonly")
                        self._rediscover()
                    raise RedisUnavailable("cluster Redis unavailable: {}".format(message[:200]))
                raise RedisReplyError(message)
            if failure.check(txredisapi.ConnectionError, DeferredTimeout, ConnectionError):
                raise RedisUnavailable("cluster Redis unavailable")
            if failure.check(ValueError):
                # txredisapi's pool, discarding a dead connection it had peeked, fails
                # with "list.remove(x): x not in list" when the connection had left the
                # idle queue already (seen while a failover drops the pool).
                raise RedisUnavailable("cluster Redis unavailable (connection lost)")
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

    def execute_durable(self, *args: Arg) -> Deferred[Any]:
        """The write, then `WAIT min_replica_acks` on the same connection (WAIT counts that
        connection's writes); its timeout is half the call's deadline."""
        if not self._acks:
            return self.execute(*args)
        wait_ms = max(1, int(self._timeout * 500))
        d = self.pipeline([args, ("WAIT", self._acks, wait_ms)])

        def check(replies: list[Any]) -> Any:
            reply, acked = replies
            if int(acked) < self._acks:
                raise ReplicasBehind("cluster Redis: {} of {} replicas confirmed the write "
                                     "within {} ms: retry".format(int(acked), self._acks,
                                                                 wait_ms))
            return reply

        return d.addCallback(check)

    def close(self) -> Deferred[None]:
        """Disconnect the pool (and the Sentinel connections)."""
        d = self._handler.disconnect()
        if self._sentinels is not None:
            sentinels = self._sentinels
            d.addCallback(lambda _: sentinels.disconnect())
            d.addCallback(lambda _: None)
        return d


def _keep_trying() -> Deferred[None]:
    return succeed(None)


def connect_redis(address: RedisAddress, clock: IReactorTime, timeout: float,
                  pool_size: int = 4, min_replica_acks: int = 0) -> TxRedisStore:
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
    _keep_reconnecting(handler._factory)
    return TxRedisStore(handler, clock, timeout, min_replica_acks=min_replica_acks)


def _keep_reconnecting(factory: Any) -> None:
    """Tune a txredisapi factory to reconnect quickly and forever."""
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


def _setup_refused(failure: Failure) -> None:
    log.error("cluster Redis refused the connection setup: {why}",
              why=failure.getErrorMessage()[:200], event="redis_refused")


def sentinel_addresses(sentinels: Sequence[str]) -> list[tuple[str, int]]:
    """("host", port) of each "host:port" (already checked by the config)."""
    pairs = [item.rpartition(":") for item in sentinels]
    return [(host.strip("[]"), int(port)) for host, _, port in pairs]


def connect_sentinel(sentinels: Sequence[str], service: str, address: RedisAddress,
                     clock: IReactorTime, timeout: float, pool_size: int = 4,
                     min_replica_acks: int = 0, sentinel_password: str = "") -> TxRedisStore:
    """A pool to the current primary of `service`, found through `sentinels`; `address`
    gives the user, password and db (its host and port are not used)."""
    import txredisapi

    manager = txredisapi.Sentinel(sentinel_addresses(sentinels), charset="utf-8",
                                  connectTimeout=timeout, replyTimeout=timeout,
                                  password=sentinel_password or None)
    # No Sentinel answering within the call deadline: this attempt fails, the next retries.
    manager.discovery_timeout = timeout
    handler = manager.master_for(service, factory_class=_primary_factory,
                                 dbid=address.db or None, poolsize=pool_size, charset=None,
                                 username=address.username, password=address.password,
                                 replyTimeout=timeout, convertNumbers=False)
    _keep_reconnecting(handler._factory)
    return TxRedisStore(handler, clock, timeout, min_replica_acks=min_replica_acks,
                        follow_failover=True, sentinels=manager)


def _primary_factory(*args: Any, **kwargs: Any) -> Any:
    """txredisapi's Sentinel factory, reading ROLE's reply as bytes (we use charset=None)."""
    import txredisapi

    class PrimaryProtocol(txredisapi.SentinelRedisProtocol):
        """txredisapi's Sentinel protocol, reading ROLE's reply as bytes (charset=None)."""

        def connectionMade(self) -> Any:
            def check_role(role: list[Any]) -> Any:
                name = role[0].decode("ascii") if isinstance(role[0], bytes) else role[0]
                if name != "master":
                    self.transport.loseConnection()
                    return succeed(None)
                return txredisapi.RedisProtocol.connectionMade(self)

            def refused(failure: Failure) -> None:
                # A wrong login: say why once (the pool's first-ready Deferred logs
                # it), drop the connection and try again later.
                self.transport.loseConnection()
                self.factory.connectionError(failure.getErrorMessage())

            d = succeed(None) if self.password is None else \
                self.auth(self.password, self.username)
            d.addCallback(lambda _: self.role())
            return d.addCallbacks(check_role, refused)

    class PrimaryFactory(txredisapi.SentinelConnectionFactory):
        """Connections to the Sentinel-named primary only."""

        protocol = PrimaryProtocol

    return PrimaryFactory(*args, **kwargs)


def connect_cluster_redis(settings: RedisSettings, clock: IReactorTime) -> TxRedisStore:
    """The pool a role opens from its `[redis]` settings (a password there wins over the
    URL's): through the Sentinels when `sentinels` is set, else straight to `url`."""
    address = parse_redis_url(settings.url)
    if settings.password:
        address = replace(address, password=settings.password)
    if settings.sentinels:
        return connect_sentinel(settings.sentinels, settings.service, address, clock,
                                settings.timeout, pool_size=settings.pool_size,
                                min_replica_acks=settings.replica_acks,
                                sentinel_password=settings.sentinel_password)
    return connect_redis(address, clock, settings.timeout, pool_size=settings.pool_size,
                         min_replica_acks=settings.replica_acks)


def sentinel_problem(sentinels: Sequence[str], service: str, timeout: float,
                     password: str = "") -> tuple[str, bool]:
    """Ask each Sentinel (blocking, before the reactor runs) for `service`'s primary.

    Returns ("", False) when one knows it; else (why, never): `never` when no Sentinel
    knows it and one that answered does not know the service, is no Sentinel or refused
    the login (a config that cannot work); False when none answered (they may come up:
    the role starts and answers 503).
    """
    unreachable, refusals = [], []
    for host, port in sentinel_addresses(sentinels):
        try:
            line = _sentinel_query(host, port, timeout, password, service)
        except OSError as exc:
            unreachable.append("{}:{}: {}".format(host, port, exc.strerror or exc))
            continue
        if line.startswith(b"*2"):
            return "", False
        if line.startswith(b"*-1"):
            refusals.append("Sentinel {}:{} knows no service {!r} (SENTINEL MASTERS lists "
                            "the names)".format(host, port, service))
        else:
            refusals.append("{}:{} is not a Sentinel we may ask: {}".format(
                host, port, line.decode("utf-8", "replace")[:120]))
    if refusals:
        return refusals[0], True
    return "no Sentinel answers ({})".format("; ".join(unreachable)), False


def _sentinel_query(host: str, port: int, timeout: float, password: str,
                    service: str) -> bytes:
    """The first reply line of SENTINEL GET-MASTER-ADDR-BY-NAME (after AUTH, if any)."""
    commands = [["SENTINEL", "GET-MASTER-ADDR-BY-NAME", service]]
    if password:
        commands.insert(0, ["AUTH", password])
    with socket.create_connection((host, port), timeout=timeout) as sock:
        return exchange_lines(sock, commands)


def resp(args: Sequence[str]) -> bytes:
    """`args` as one RESP command (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def exchange_lines(sock: socket.socket, commands: Sequence[Sequence[str]]) -> bytes:
    """Send `commands` on the blocking `sock` and read the first line of each reply;
    the last line, or the first error line (the commands after it are not read)."""
    sock.sendall(b"".join(resp(command) for command in commands))
    with sock.makefile("rb") as replies:
        line = b""
        for _ in commands:
            line = replies.readline().rstrip(b"\r\n")
            if line.startswith(b"-"):
                break
        return line
