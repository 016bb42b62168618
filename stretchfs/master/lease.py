"""A lease in Redis with a fencing token: one holder at a time among masters.

The lease is one HASH (`owner`, `token`, `expires`, `fence`).  `hold()`
acquires it when it is free or expired, or renews it when this holder still
has it; each acquisition draws a new token from `fence`, so tokens only
grow.  Expiry compares times of the callers' clocks (epoch seconds), like
purchases, not Redis TTLs.  Every write the holder makes goes through
`fenced()`, a script that applies it only while the stored token is still the
holder's: a holder that lost the lease (paused, partitioned) cannot overwrite
the work of the next one, and `valid()` tells it to stop before starting more.

`LeasedJob` runs a periodic job (purchase pruning) on whichever master holds
its lease: every master bids every `ttl / 3` seconds, so when the holder dies
another takes over at most `ttl * 4 / 3` seconds later (docs/ha.md).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from stretchfs.errors import StretchFSError
from stretchfs.master.lua import LuaScript, text
from stretchfs.periodic import PeriodicService
from stretchfs.redisstore import Arg, RedisStore

log = Logger()

# KEYS[1] lease HASH; ARGV owner, token held (0: none), now, ttl -> token, or 0 if held elsewhere
HOLD = LuaScript("""
local cur = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if cur[1] == ARGV[1] and cur[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'expires', tostring(now + ttl))
  return tonumber(cur[2])
end
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[3] or '0') > now then return 0 end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'expires', tostring(now + ttl))
return token
""")

# KEYS[1] lease HASH; ARGV[1] token, ARGV[2] JSON list of commands -> 1 applied, 0 fenced off
FENCED = LuaScript("""
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
for _, command in ipairs(cjson.decode(ARGV[2])) do redis.call(unpack(command)) end
return 1
""")


class Releasable(Protocol):
    """A job that holds a lease and gives it up when its master stops cleanly."""

    job: str

    async def release(self) -> None:
        """Stop, and give the lease up if held."""


def lease_owner(node_name: str) -> str:
    """A bidder's name: the node's, plus a random part that differs at every start."""
    return "{}#{}".format(node_name, secrets.token_hex(4))


class Lease:
    """This master's hold on one lease key."""

    def __init__(self, redis: RedisStore, key: str, owner: str, ttl: float,
                 clock: IReactorTime) -> None:
        self._redis = redis
        self._key = key
        self.owner = owner
        self._ttl = ttl
        self._clock = clock
        self.token = 0
        self._held_at = 0.0
        self._until = 0.0

    @property
    def key(self) -> str:
        """The lease HASH."""
        return self._key

    @property
    def ttl(self) -> float:
        """Seconds the lease lasts without renewal."""
        return self._ttl

    async def hold(self) -> int:
        """Acquire or renew; the fencing token, or 0 while another master holds it."""
        now = self._clock.seconds()
        token = int(await HOLD.run(self._redis, [self._key],
                                   [self.owner, str(self.token), repr(now), repr(self._ttl)]))
        self.token = token
        self._held_at = now
        # Stop a little before the lease runs out, so no work starts under an expired lease.
        self._until = now + self._ttl * 0.8 if token else 0.0
        return token

    async def last_run(self) -> float | None:
        """When a holder last recorded a run of the job (`LeasedJob`), None if never."""
        ran = await self._redis.execute("HGET", self._key, "ran")
        return float(ran) if ran is not None else None

    async def keep(self) -> bool:
        """During long work: renew once a third of the TTL has passed since the last
        renewal.  True while the lease is still held with the same token."""
        if self.valid() and self._clock.seconds() - self._held_at >= self._ttl / 3:
            token = self.token
            return await self.hold() == token
        return self.valid()

    async def release(self) -> None:
        """Give the lease up (a clean stop): another master takes it at its next bid."""
        await self.fenced([["HSET", self._key, "expires", "0"]])
        self.token = 0
        self._until = 0.0

    def valid(self) -> bool:
        """True while this master holds the lease by its own clock."""
        return bool(self.token) and self._clock.seconds() < self._until

    async def fenced(self, commands: Sequence[Sequence[Arg]]) -> bool:
        """Run `commands` atomically if the lease is still ours; False when fenced off."""
        if not self.token:
            return False
        encoded = json.dumps([[a.decode() if isinstance(a, bytes) else a for a in command]
                              for command in commands])
        applied = await FENCED.run(self._redis, [self._key], [str(self.token), encoded])
        if not int(applied):
            self.token = 0
            self._until = 0.0
        return bool(int(applied))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease (`owner` None when it was never taken) and until when."""

    owner: str | None
    token: int
    expires: float | None


async def lease_holder(redis: RedisStore, key: str) -> Holder:
    """The lease's holder as stored."""
    owner, token, expires = await redis.execute("HMGET", key, "owner", "token", "expires")
    return Holder(owner=text(owner) if owner is not None else None,
                  token=int(token) if token is not None else 0,
                  expires=float(expires) if expires is not None else None)


class LeasedJob(PeriodicService):
    """Runs `work()` every `interval` seconds on the one master that holds `lease`.

    Every `ttl / 3` seconds this master bids for (or renews) the lease.  The
    holder runs `work()` once `interval` has passed since the last run of any
    master (`ran` in the lease HASH, written through the fenced script after a
    run that `work()` reports done), so a new holder neither reruns a job
    just done nor waits a whole interval for one that was due.  `work()` calls
    `lease.keep()` between batches and stops when it answers False.
    `on_hold(held)` follows every bid (a metric).
    """

    def __init__(self, lease: Lease, clock: IReactorTime, interval: float, job: str,
                 on_hold: Callable[[bool], None]) -> None:
        super().__init__(clock, lease.ttl / 3)
        self.lease = lease
        self.job = job
        self._job_interval = interval   # PeriodicService's _interval is the bid period
        self._on_hold = on_hold
        self.held = False
        self._failing = False

    async def work(self) -> bool:
        """One run of the job (subclasses); True when done, False to retry at the next bid."""
        raise NotImplementedError

    def run_once(self) -> Deferred[None]:
        """One bid and, when due, one run; failures are logged (a bug with its traceback,
        an unavailable Redis once until a bid succeeds again)."""
        return Deferred.fromCoroutine(self.bid()).addErrback(self._failed)

    async def bid(self) -> None:
        """Hold or renew the lease; run the job when due."""
        token = await self.lease.hold()
        if self._failing:
            self._failing = False
            log.info("{job} lease bids work again", job=self.job, event="lease")
        self._held(bool(token))
        if not token:
            return
        ran = await self.lease.last_run()
        now = self._clock.seconds()
        if ran is not None and now - ran < self._job_interval:
            return
        if await self.work():
            self._held(await self.lease.fenced([["HSET", self.lease.key, "ran", repr(now)]]))

    async def release(self) -> None:
        """Stop bidding and give the lease up if held (a clean stop of this master)."""
        PeriodicService.stopService(self)
        if self.lease.token:
            await self.lease.release()
            log.info("{job} lease given up", job=self.job, event="lease")
        self._held(False)

    def _held(self, held: bool) -> None:
        if held != self.held:
            log.info("{job} {state} (fencing token {token})", job=self.job,
                     state="leading" if held else "standing by", token=self.lease.token,
                     event="lease")
        self.held = held
        self._on_hold(held)

    def _failed(self, failure: Failure) -> None:
        self._held(False)
        if not failure.check(StretchFSError):
            log.failure("during a {job} lease round", failure, job=self.job)
        elif not self._failing:
            self._failing = True
            log.warn("{job} lease round failed: {error}", job=self.job,
                     error=str(failure.value), event="lease")
