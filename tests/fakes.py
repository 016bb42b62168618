"""In-memory fakes of the outside world for deterministic unit tests."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, fail, succeed

from stretchfs.redisstore import Arg, RedisReplyError, RedisUnavailable, ReplicasBehind


def _b(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


class FakeRedisStore:
    """A dict-backed `RedisStore` answering with already-fired Deferreds.

    Implements the commands StretchFS uses (add more to `_commands` as
    needed); key expiry follows the injected clock.  Set `down = True` to
    make every call fail with `RedisUnavailable`, as a real outage does, and
    `replicas_behind = True` to make `execute_durable` apply its write and then
    fail with `ReplicasBehind`, as a WAIT that no replica answered does.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.data: dict[bytes, Any] = {}
        self.expires: dict[bytes, float] = {}
        self.down = False
        self.replicas_behind = False
        self.durable: list[tuple[bytes, ...]] = []
        self.calls: list[tuple[bytes, ...]] = []
        # EVAL: a Python twin per script source, run as fn(store, keys, args)
        self.scripts: dict[bytes, Callable[["FakeRedisStore", list[bytes], list[bytes]], Any]] = {}
        self._commands: dict[bytes, Callable[..., Any]] = {
            b"PING": lambda: b"PONG",
            b"GET": self._get, b"SET": self._set, b"DEL": self._del,
            b"EXISTS": self._exists, b"INCR": self._incr, b"INCRBY": self._incrby,
            b"EXPIRE": self._expire, b"PEXPIRE": self._pexpire, b"TTL": self._ttl,
            b"HSET": self._hset, b"HGET": self._hget, b"HGETALL": self._hgetall,
            b"HDEL": self._hdel, b"HLEN": self._hlen,
            b"SADD": self._sadd, b"SREM": self._srem, b"SMEMBERS": self._smembers,
            b"SCARD": self._scard, b"SISMEMBER": self._sismember,
            b"ZADD": self._zadd, b"ZREM": self._zrem, b"ZSCORE": self._zscore,
            b"ZRANGEBYSCORE": self._zrangebyscore, b"ZREMRANGEBYSCORE": self._zremrangebyscore,
            b"ZCARD": self._zcard, b"EVAL": self._eval,
        }

    # -- RedisStore -------------------------------------------------------
    def execute(self, *args: Arg) -> Deferred[Any]:
        """Run one command."""
        if self.down:
            return fail(RedisUnavailable("cluster Redis unavailable"))
        try:
            return succeed(self._run([_b(a) for a in args]))
        except RedisReplyError as exc:
            return fail(exc)

    def pipeline(self, commands: Sequence[Sequence[Arg]]) -> Deferred[list[Any]]:
        """Run several commands."""
        if self.down:
            return fail(RedisUnavailable("cluster Redis unavailable"))
        try:
            return succeed([self._run([_b(a) for a in c]) for c in commands])
        except RedisReplyError as exc:
            return fail(exc)

    def execute_durable(self, *args: Arg) -> Deferred[Any]:
        """Run one write (recorded in `durable`); see `replicas_behind`."""
        d = self.execute(*args)
        if not d.called or self.down:
            return d
        self.durable.append(tuple(_b(a) for a in args))
        if self.replicas_behind:
            d.addCallback(lambda _: fail(ReplicasBehind("0 of 1 replicas confirmed the write")))
        return d

    def close(self) -> Deferred[None]:
        """Nothing to close."""
        return succeed(None)

    # -- machinery --------------------------------------------------------
    def _run(self, args: list[bytes]) -> Any:
        self.calls.append(tuple(args))
        name = args[0].upper()
        if name not in self._commands:
            raise RedisReplyError("ERR unknown command '{}' in FakeRedisStore".format(
                name.decode()))
        return self._commands[name](*args[1:])

    def _eval(self, source: bytes, numkeys: bytes, *rest: bytes) -> Any:
        if source not in self.scripts:
            raise RedisReplyError("NOSCRIPT no Python twin of this script in FakeRedisStore")
        count = int(numkeys)
        return self.scripts[source](self, list(rest[:count]), list(rest[count:]))

    def run(self, *args: Arg) -> Any:
        """Run one command synchronously (for script twins)."""
        return self._run([_b(a) for a in args])

    def _live(self, key: bytes) -> Any:
        deadline = self.expires.get(key)
        if deadline is not None and deadline <= self.clock.seconds():
            self.data.pop(key, None)
            self.expires.pop(key, None)
        return self.data.get(key)

    def _container(self, key: bytes, kind: type) -> Any:
        value = self._live(key)
        if value is None:
            value = kind()
            self.data[key] = value
        if not isinstance(value, kind):
            raise RedisReplyError("WRONGTYPE")
        return value

    def _cleanup(self, key: bytes) -> None:
        if key in self.data and not self.data[key]:
            del self.data[key]
            self.expires.pop(key, None)

    def _get(self, key: bytes) -> bytes | None:
        return self._live(key)

    def _set(self, key: bytes, value: bytes, *options: bytes) -> bytes | None:
        opts = [o.upper() for o in options]
        if b"NX" in opts and self._live(key) is not None:
            return None
        self.data[key] = value
        self.expires.pop(key, None)
        if b"EX" in opts:
            self._expire(key, options[opts.index(b"EX") + 1])
        if b"PX" in opts:
            self._pexpire(key, options[opts.index(b"PX") + 1])
        return b"OK"

    def _del(self, *keys: bytes) -> int:
        count = 0
        for key in keys:
            if self._live(key) is not None:
                count += 1
            self.data.pop(key, None)
            self.expires.pop(key, None)
        return count

    def _exists(self, *keys: bytes) -> int:
        return sum(1 for key in keys if self._live(key) is not None)

    def _incrby(self, key: bytes, amount: bytes) -> int:
        value = int(self._live(key) or 0) + int(amount)
        self.data[key] = str(value).encode()
        return value

    def _incr(self, key: bytes) -> int:
        return self._incrby(key, b"1")

    def _expire(self, key: bytes, seconds: bytes) -> int:
        if self._live(key) is None:
            return 0
        self.expires[key] = self.clock.seconds() + float(seconds)
        return 1

    def _pexpire(self, key: bytes, millis: bytes) -> int:
        return self._expire(key, str(float(millis) / 1000).encode())

    def _ttl(self, key: bytes) -> int:
        if self._live(key) is None:
            return -2
        if key not in self.expires:
            return -1
        return int(self.expires[key] - self.clock.seconds())

    def _hset(self, key: bytes, *pairs: bytes) -> int:
        table = self._container(key, dict)
        added = 0
        for field, value in zip(pairs[::2], pairs[1::2]):
            added += field not in table
            table[field] = value
        return added

    def _hget(self, key: bytes, field: bytes) -> bytes | None:
        return (self._live(key) or {}).get(field)

    def _hgetall(self, key: bytes) -> list[bytes]:
        flat: list[bytes] = []
        for field, value in (self._live(key) or {}).items():
            flat += [field, value]
        return flat

    def _hdel(self, key: bytes, *fields: bytes) -> int:
        table = self._live(key) or {}
        count = sum(1 for f in fields if table.pop(f, None) is not None)
        self._cleanup(key)
        return count

    def _hlen(self, key: bytes) -> int:
        return len(self._live(key) or {})

    def _sadd(self, key: bytes, *members: bytes) -> int:
        target = self._container(key, set)
        before = len(target)
        target.update(members)
        return len(target) - before

    def _srem(self, key: bytes, *members: bytes) -> int:
        target = self._live(key) or set()
        before = len(target)
        target.difference_update(members)
        count = before - len(target)
        self._cleanup(key)
        return count

    def _smembers(self, key: bytes) -> list[bytes]:
        return sorted(self._live(key) or set())

    def _scard(self, key: bytes) -> int:
        return len(self._live(key) or set())

    def _sismember(self, key: bytes, member: bytes) -> int:
        return int(member in (self._live(key) or set()))

    def _zadd(self, key: bytes, *pairs: bytes) -> int:
        target = self._container(key, dict)
        added = 0
        for score, member in zip(pairs[::2], pairs[1::2]):
            added += member not in target
            target[member] = float(score)
        return added

    def _zrem(self, key: bytes, *members: bytes) -> int:
        target = self._live(key) or {}
        count = sum(1 for m in members if target.pop(m, None) is not None)
        self._cleanup(key)
        return count

    def _zscore(self, key: bytes, member: bytes) -> bytes | None:
        score = (self._live(key) or {}).get(member)
        return None if score is None else repr(score).encode()

    @staticmethod
    def _bound(value: bytes) -> tuple[float, bool]:
        if value == b"-inf":
            return float("-inf"), False
        if value == b"+inf":
            return float("inf"), False
        if value.startswith(b"("):
            return float(value[1:]), True
        return float(value), False

    def _in_range(self, score: float, low: bytes, high: bytes) -> bool:
        lo, lo_open = self._bound(low)
        hi, hi_open = self._bound(high)
        above = score > lo if lo_open else score >= lo
        below = score < hi if hi_open else score <= hi
        return above and below

    def _zrangebyscore(self, key: bytes, low: bytes, high: bytes) -> list[bytes]:
        target = self._live(key) or {}
        members = [(s, m) for m, s in target.items() if self._in_range(s, low, high)]
        return [m for s, m in sorted(members)]

    def _zremrangebyscore(self, key: bytes, low: bytes, high: bytes) -> int:
        target = self._live(key) or {}
        doomed = [m for m, s in target.items() if self._in_range(s, low, high)]
        for member in doomed:
            del target[member]
        self._cleanup(key)
        return len(doomed)

    def _zcard(self, key: bytes) -> int:
        return len(self._live(key) or {})
