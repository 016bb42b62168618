"""A lease in Redis with a fencing token: one holder at a time among masters.

The lease is one HASH (`owner`, `token`, `expires`, `fence`).  `hold()`
acquires it when it is free or expired, or renews it when this holder still
has it; each acquisition draws a new token from `fence`, so tokens only
grow.  Expiry compares times of the callers' clocks (epoch seconds), like
purchases, not Redis TTLs.  Every write the holder makes goes through
`fenced()`, a script that applies it only while the stored token is still the
holder's: a holder that lost the lease (paused, partitioned) cannot overwrite
the work of the next one, and `valid()` tells it to stop before starting more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from twisted.internet.interfaces import IReactorTime

from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import Arg, RedisStore

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

    async def keep(self) -> bool:
        """During long work: renew once a third of the TTL has passed since the last
        renewal.  True while the lease is still held with the same token."""
        if self.valid() and self._clock.seconds() - self._held_at >= self._ttl / 3:
            token = self.token
            return await self.hold() == token
        return self.valid()

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
