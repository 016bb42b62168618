"""The ballot box: down votes in the cluster Redis, tallied as they are written.

Layout (keys under the configured prefix, e.g. ``sfs:``):

``ping:votes:<target>``
    ZSET voter -> expiry (epoch seconds).  A vote counts while its expiry
    lies in the future; the voter refreshes it while the target stays
    unreachable and removes it as soon as it hears from the target.  Expired
    members are pruned by the next writer, and the key itself expires
    `vote_ttl` after its last write.
``ping:down``
    HASH target -> JSON ``{"since", "by", "voters", "needed"}``: the peers a
    majority of their observers currently holds down.
``ping:version``
    Counter bumped by every change of ``ping:down``.
``ping:verdicts``
    HASH target -> JSON ``{"available", "since", "by"}``: the last verdict
    change some node observed, for the master's cluster view.

Every vote write is one script (`TALLY_SCRIPT`): it prunes expired votes,
casts or withdraws the vote, recounts the target against its electorates
(the observers of each epoch that holds, minus peers in ``ping:down``) and
adds or removes the target in ``ping:down``, bumping the version.  Readers
poll the version (one GET per tick) and read the hash only when it moved.
Writes are serialised (one pipeline in flight, the latest wanted state wins),
so a withdrawal can never be overtaken by an older vote.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.pingnet.keys import down_key, verdicts_key, version_key, votes_key
from stretchfs.redisstore import RedisStore

log = Logger()

TALLY_SCRIPT = """
local votes, down, version = KEYS[1], KEYS[2], KEYS[3]
local target, voter, op, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('ZREMRANGEBYSCORE', votes, '-inf', now)
if op == 'cast' then
  redis.call('ZADD', votes, ARGV[5], voter)
  redis.call('PEXPIRE', votes, ARGV[6])
elseif op == 'withdraw' then
  redis.call('ZREM', votes, voter)
end
local live = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', votes, '(' .. now, '+inf')) do
  live[name] = true
end
local is_down, found, wanted = false, {}, 0
local i = 8
for _ = 1, tonumber(ARGV[7]) do
  local size = tonumber(ARGV[i])
  local eligible, voters = 0, {}
  for j = i + 1, i + size do
    if redis.call('HEXISTS', down, ARGV[j]) == 0 then
      eligible = eligible + 1
      if live[ARGV[j]] then voters[#voters + 1] = ARGV[j] end
    end
  end
  i = i + size + 1
  local needed = math.floor(eligible / 2) + 1
  if not is_down and eligible > 0 and #voters >= needed then
    is_down, found, wanted = true, voters, needed
  end
end
local was = redis.call('HEXISTS', down, target) == 1
if is_down and not was then
  redis.call('HSET', down, target, cjson.encode(
    {since = tonumber(now), by = voter, voters = found, needed = wanted}))
  redis.call('INCR', version)
elseif was and not is_down then
  redis.call('HDEL', down, target)
  redis.call('INCR', version)
end
if is_down then return 1 end
return 0
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _records(flat: Any) -> dict[str, Any]:
    records: dict[str, Any] = {}
    flat = flat or []
    for name, raw in zip(flat[::2], flat[1::2]):
        try:
            records[_text(name)] = json.loads(raw)
        except ValueError:
            continue
    return records


def tally_command(prefix: str, target: str, voter: str, op: str, now: float, vote_ttl: float,
                  electorates: list[list[str]]) -> list[Any]:
    """The EVAL that casts ("cast"), withdraws ("withdraw") or leaves ("recount")
    `voter`'s vote on `target` and recounts it against `electorates`."""
    args: list[Any] = [target, voter, op, repr(now), repr(now + vote_ttl),
                       int(vote_ttl * 1000), len(electorates)]
    for electorate in electorates:
        args.append(len(electorate))
        args.extend(electorate)
    return ["EVAL", TALLY_SCRIPT, 3, votes_key(prefix, target), down_key(prefix),
            version_key(prefix), *args]


def read_version(redis: RedisStore, prefix: str) -> Deferred[int]:
    """The down hash's version (0 before the first change)."""
    return redis.execute("GET", version_key(prefix)).addCallback(
        lambda raw: int(raw) if raw is not None else 0)


def read_down(redis: RedisStore, prefix: str) -> Deferred[tuple[int, dict[str, Any]]]:
    """The version and the down hash (target -> record), in one round trip; the hash is
    at least as new as the version."""
    d = redis.pipeline([["GET", version_key(prefix)], ["HGETALL", down_key(prefix)]])
    return d.addCallback(lambda replies: (int(replies[0]) if replies[0] is not None else 0,
                                          _records(replies[1])))


def read_tallies(redis: RedisStore, prefix: str, targets: list[str],
                 now: float) -> Deferred[tuple[dict[str, set[str]], dict[str, Any]]]:
    """Live voters per target plus the verdict records, in one round trip (the master's
    cluster view; nodes read the down hash instead)."""
    commands: list[list[Any]] = [["ZRANGEBYSCORE", votes_key(prefix, t), "({!r}".format(now),
                                  "+inf"] for t in targets]
    commands.append(["HGETALL", verdicts_key(prefix)])

    def parse(replies: list[Any]) -> tuple[dict[str, set[str]], dict[str, Any]]:
        votes = {target: {_text(v) for v in (reply or [])}
                 for target, reply in zip(targets, replies)}
        return votes, _records(replies[-1])

    return redis.pipeline(commands).addCallback(parse)


class BallotBox:
    """This node's votes in Redis, kept in line with what it wants them to be."""

    def __init__(self, redis: RedisStore, prefix: str, self_name: str, vote_ttl: float,
                 refresh_after: float, now: Callable[[], float],
                 electorates: Callable[[str], list[list[str]]], *,
                 on_cast: Callable[[str], None] = lambda target: None,
                 on_error: Callable[[Any], None] = lambda failure: None,
                 on_ok: Callable[[], None] = lambda: None) -> None:
        """`electorates(target)` lists the observers of each epoch holding now;
        `on_cast(target)` runs when a new vote is written, `on_error(failure)` when a
        write fails, `on_ok()` when one lands."""
        self._redis = redis
        self._prefix = prefix
        self._self = self_name
        self._ttl = vote_ttl
        self._refresh_after = refresh_after
        self._now = now
        self._electorates = electorates
        self.wanted: set[str] = set()
        self.watched: set[str] = set()         # held down, observed, no vote of ours: recount
        self._written: dict[str, float] = {}   # target -> when our vote was last written
        self._recounted: dict[str, float] = {}  # target -> when we last recounted it
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

    def watch(self, targets: Iterable[str]) -> None:
        """Peers held down that this node observes: recounted every `refresh_after`, so
        a down verdict whose voters died is lifted once their votes expire."""
        self.watched = set(targets)
        for gone in set(self._recounted) - self.watched:
            del self._recounted[gone]

    def sync(self) -> Deferred[Any] | None:
        """Write whatever differs (and refresh ageing votes); one write at a time."""
        if self._busy:
            self._again = True
            return None
        now = self._now()
        adds = [t for t in sorted(self.wanted)
                if t not in self._written or now - self._written[t] >= self._refresh_after]
        removes = sorted(self._maybe - self.wanted)
        recounts = sorted(t for t in self.watched - self.wanted - self._maybe
                          if now - self._recounted.get(t, float("-inf")) >= self._refresh_after)
        commands = ([tally_command(self._prefix, t, self._self, "cast", now, self._ttl,
                                   self._electorates(t)) for t in adds]
                    + [tally_command(self._prefix, t, self._self, "withdraw", now, self._ttl,
                                     self._electorates(t)) for t in removes]
                    + [tally_command(self._prefix, t, self._self, "recount", now, self._ttl,
                                     self._electorates(t)) for t in recounts])
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
            for target in recounts:
                self._recounted[target] = now
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
        self.watched = set()
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
