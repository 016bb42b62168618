"""The ballot box: down votes in the cluster Redis.

Layout (keys under the configured prefix, e.g. ``sfs:``):

``ping:votes:<target>``
    ZSET voter -> expiry (epoch seconds).  A vote counts while its expiry
    lies in the future; the voter refreshes it every probe round while the
    target stays unreachable and removes it as soon as it hears from the
    target.  Expired members (a dead voter's votes) are pruned by the next
    writer, and the key itself expires `vote_ttl` after its last write.
``ping:verdicts``
    HASH target -> JSON ``{"available", "since", "by"}``: the last verdict
    change some node observed, for the master's cluster view.

Writes are serialised (one pipeline in flight at a time, the latest wanted
state wins), so a withdrawal can never be overtaken by an older vote on
another pooled connection.  Reads are one pipeline: one round trip.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.pingnet.keys import verdicts_key, votes_key
from stretchfs.redisstore import RedisStore

log = Logger()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_tallies(redis: RedisStore, prefix: str, targets: list[str],
                 now: float) -> Deferred[tuple[dict[str, set[str]], dict[str, Any]]]:
    """Live voters per target plus the verdict records, in one round trip."""
    commands: list[list[Any]] = [["ZRANGEBYSCORE", votes_key(prefix, t), "({!r}".format(now),
                                  "+inf"] for t in targets]
    commands.append(["HGETALL", verdicts_key(prefix)])

    def parse(replies: list[Any]) -> tuple[dict[str, set[str]], dict[str, Any]]:
        votes = {target: {_text(v) for v in (reply or [])}
                 for target, reply in zip(targets, replies)}
        flat = replies[-1] or []
        records: dict[str, Any] = {}
        for name, raw in zip(flat[::2], flat[1::2]):
            try:
                records[_text(name)] = json.loads(raw)
            except ValueError:
                continue
        return votes, records

    return redis.pipeline(commands).addCallback(parse)


class BallotBox:
    """This node's votes in Redis, kept in line with what it wants them to be."""

    def __init__(self, redis: RedisStore, prefix: str, self_name: str, vote_ttl: float,
                 refresh_after: float, now: Callable[[], float], *,
                 on_cast: Callable[[str], None] = lambda target: None,
                 on_error: Callable[[Any], None] = lambda failure: None,
                 on_ok: Callable[[], None] = lambda: None) -> None:
        """`on_cast(target)` runs when a new vote is written, `on_error(failure)` when a
        write fails, `on_ok()` when one lands."""
        self._redis = redis
        self._prefix = prefix
        self._self = self_name
        self._ttl = vote_ttl
        self._refresh_after = refresh_after
        self._now = now
        self.wanted: set[str] = set()
        self._written: dict[str, float] = {}   # target -> when our vote was last written
        self._maybe: set[str] = set()          # targets we may hold a vote on in Redis
        self._busy = False
        self._again = False
        self._drained: list[Deferred[Any]] = []  # waiting until no write is in flight
        self._on_cast = on_cast
        self._on_error = on_error
        self._on_ok = on_ok

    def want(self, targets: Iterable[str]) -> Deferred[None] | None:
        """Set the peers this node votes against; writes the difference (the write's Deferred)."""
        targets = set(targets)
        if targets == self.wanted:
            return None
        self.wanted = targets
        return self.sync()

    def sync(self) -> Deferred[Any] | None:
        """Write whatever differs (and refresh ageing votes); one write at a time."""
        if self._busy:
            self._again = True
            return None
        now = self._now()
        commands: list[list[Any]] = []
        adds = [t for t in sorted(self.wanted)
                if t not in self._written or now - self._written[t] >= self._refresh_after]
        removes = sorted(self._maybe - self.wanted)
        for target in adds:
            key = votes_key(self._prefix, target)
            commands.append(["ZREMRANGEBYSCORE", key, "-inf", repr(now)])
            commands.append(["ZADD", key, repr(now + self._ttl), self._self])
            commands.append(["PEXPIRE", key, int(self._ttl * 1000)])
        for target in removes:
            commands.append(["ZREM", votes_key(self._prefix, target), self._self])
        if not commands:
            return None
        self._busy = True
        self._maybe |= set(adds)
        d = self._redis.pipeline(commands)

        def done(_: Any) -> None:
            for target in adds:
                if target not in self._written:
                    self._on_cast(target)
                self._written[target] = now
            for target in removes:
                self._written.pop(target, None)
                self._maybe.discard(target)
            self._on_ok()

        def failed(failure: Any) -> None:
            for target in adds:
                self._written.pop(target, None)
            self._on_error(failure)

        def finish(_: Any) -> None:
            self._busy = False
            if self._again:
                self._again = False
                self.sync()
            if not self._busy:
                drained, self._drained = self._drained, []
                for waiter in drained:
                    waiter.callback(None)

        d.addCallbacks(done, failed)
        d.addBoth(finish)
        return d

    def withdraw_all(self) -> Deferred[Any] | None:
        """Remove every vote of this node (on shutdown); the Deferred fires once the
        removal is written, also when another write was in flight (None: nothing to do)."""
        self.wanted = set()
        self._maybe |= set(self._written)
        written = self.sync()
        if written is not None or not self._busy:
            return written
        waiter: Deferred[Any] = Deferred()
        self._drained.append(waiter)
        return waiter

    def record_verdict(self, target: str, available: bool, since: float) -> Deferred[Any]:
        """Note a verdict change for the master's cluster view."""
        value = json.dumps({"available": available, "since": since, "by": self._self})
        return self._redis.execute("HSET", verdicts_key(self._prefix), target, value)
