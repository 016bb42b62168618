"""The purchase database: create, lookup, remove, snapshot, feed and pruning.

A purchase is a JSON string under its own key plus a member of a ZSET scored
by `expires`; every create and removal (explicit or by pruning) is XADDed to
the purchase feed in the same Lua script.  Expiry is decided by the injected
clock (`expires <= clock.seconds()` is expired, even before pruning); the
Redis TTL on the key is only a backstop long after the pruning would have
removed it.

A purchase belongs to its buyer: `owner` is the user name the prism sends
(null when created without one).  Lookups and removals that name an owner
treat another owner's purchase exactly as an unknown token.  Records stored
before owners existed carry the buyer's `session` token and no owner: they
belong to nobody (delivery by token still works), and their `session` is
dropped from every answer, feed page and snapshot line.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from stretchfs.master import validate
from stretchfs.master.feeds import last_cursor, read_feed
from stretchfs.master.inventory import ScanChunks
from stretchfs.master.keys import Keys
from stretchfs.master.lease import Lease, LeasedJob
from stretchfs.master.lua import LuaScript
from stretchfs.redisstore import RedisStore, RedisUnavailable
from stretchfs.wire.identifiers import new_token
from stretchfs.wire.purchases import parse_purchase_request

log = Logger()

DEFAULT_LIFE_SECONDS = 7200.0
PRUNE_BATCH = 1000
PRUNE_MAX_BATCHES = 100_000
SNAPSHOT_CHUNK_TOKENS = 1000
LEGACY_SESSION_FIELD = b'"session"'


# KEYS[1] purchase key, KEYS[2] expiry ZSET, KEYS[3] feed
# ARGV[1] token, ARGV[2] json, ARGV[3] expires, ARGV[4] backstop TTL s, ARGV[5] feed max length
CREATE = LuaScript("""
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[4]) == false then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'c', 'a|' .. ARGV[2])
return 1
""")

# KEYS[1] expiry ZSET, KEYS[2] feed; ARGV[1] purchase key prefix, ARGV[2] feed max length,
# ARGV[3..] tokens -> how many existed
REMOVE = LuaScript("""
local n = 0
for i = 3, #ARGV, 1 do
  local t = ARGV[i]
  local existed = redis.call('DEL', ARGV[1] .. t) + redis.call('ZREM', KEYS[1], t)
  if existed > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'c', 'r|' .. t)
    n = n + 1
  end
end
return n
""")

# KEYS[1] purchase key, KEYS[2] expiry ZSET, KEYS[3] feed
# ARGV[1] token, ARGV[2] owner, ARGV[3] feed max length -> 1 removed, 0 unknown or not theirs
REMOVE_OWNED = LuaScript("""
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'c', 'r|' .. ARGV[1])
return 1
""")

# KEYS[1] expiry ZSET; ARGV[1] now -> tokens expired at `now` (one batch)
EXPIRED = LuaScript("""
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
""")

# One chunk of the purchase snapshot: ZSCAN the expiry ZSET, unexpired only.
# KEYS[1] expiry ZSET; ARGV[1] cursor, ARGV[2] purchase key prefix, ARGV[3] now, ARGV[4] COUNT
SNAPSHOT_CHUNK = LuaScript("""
local r = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[4])
local now = tonumber(ARGV[3])
local flat = r[2]
local out = {}
for j = 1, #flat, 2 do
  if tonumber(flat[j + 1]) > now then
    local v = redis.call('GET', ARGV[2] .. flat[j])
    if v then out[#out + 1] = v .. '\\n' end
  end
end
return {r[1], table.concat(out), #out}
""")


def parse_purchase(body: dict[str, Any], now: float) -> dict[str, Any]:
    """Validate a create body (`wire.purchases`, `ext` required); the purchase without its
    token."""
    request = parse_purchase_request(body, default_life=DEFAULT_LIFE_SECONDS)
    owner = body.get("owner")
    if owner is not None:
        validate.username(owner)
    return {"hash": request.sha1, "ext": validate.extension(request.ext),
            "life": request.life, "expires": now + request.life,
            "referrer": request.referrer, "ip": request.ip, "owner": owner, "created": now}


def without_session(record: dict[str, Any]) -> dict[str, Any]:
    """A stored purchase as answered: a pre-owner record's `session` token dropped."""
    record.pop("session", None)
    return record


def lines_without_session(chunk: bytes) -> bytes:
    """NDJSON purchase lines with any pre-owner record's `session` token dropped."""
    if LEGACY_SESSION_FIELD not in chunk:
        return chunk
    return b"\n".join(
        json.dumps(without_session(json.loads(line)), separators=(",", ":")).encode("utf-8")
        if LEGACY_SESSION_FIELD in line else line for line in chunk.split(b"\n"))


def decode_change(payload: bytes) -> dict[str, Any]:
    """A purchase feed entry as the change object of the API."""
    op, _, rest = payload.partition(b"|")
    if op == b"a":
        return {"op": "add", "purchase": without_session(json.loads(rest))}
    return {"op": "remove", "token": rest.decode("ascii")}


class PurchaseSnapshot:
    """Chunks of NDJSON over every unexpired purchase, as answered."""

    def __init__(self, chunks: ScanChunks) -> None:
        self._chunks = chunks

    async def next(self) -> tuple[bytes, bool]:
        """The next chunk and whether it was the last."""
        chunk, last = await self._chunks.next()
        return lines_without_session(chunk), last


class Purchases:
    """The purchase database on the cluster Redis."""

    def __init__(self, redis: RedisStore, keys: Keys, clock: IReactorTime, feed_max_len: int,
                 prune_interval: float, *, feed_page_max_bytes: int,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.feed_max_len = feed_max_len
        self.feed_page_max_bytes = feed_page_max_bytes
        self.prune_interval = prune_interval

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a purchase from a validated-on-entry body; returns it with its token."""
        purchase = parse_purchase(body, self.clock.seconds())
        backstop = int(purchase["life"] + 2 * self.prune_interval + 3600)
        for _ in range(5):
            token = new_token()
            record = dict(purchase, token=token)
            encoded = json.dumps(record, separators=(",", ":"))
            created = await CREATE.run(
                self.redis, [self.keys.purchase(token), self.keys.purchase_expiry,
                             self.keys.purchase_feed],
                [token, encoded, repr(float(record["expires"])), backstop, self.feed_max_len],
                durable=True)
            if int(created):
                self.on_change()
                return record
        raise RuntimeError("could not draw an unused purchase token")

    async def get(self, token: str, owner: str | None = None) -> dict[str, Any] | None:
        """The purchase of `token`, None when unknown, expired or (given `owner`) not theirs."""
        raw = await self.redis.execute("GET", self.keys.purchase(token))
        if raw is None:
            return None
        record = without_session(json.loads(raw))
        if float(record["expires"]) <= self.clock.seconds():
            return None
        if owner is not None and record.get("owner") != owner:
            return None
        return record

    async def remove(self, token: str, owner: str | None = None) -> int:
        """Remove a purchase (announced on the feed); 1 when it existed, else 0.

        Given `owner`, another owner's purchase is left alone and counts 0,
        checked and removed in one script.
        """
        if owner is None:
            count = int(await REMOVE.run(self.redis, [self.keys.purchase_expiry,
                                                      self.keys.purchase_feed],
                                         [self.keys.purchase(""), self.feed_max_len, token]))
        else:
            count = int(await REMOVE_OWNED.run(
                self.redis, [self.keys.purchase(token), self.keys.purchase_expiry,
                             self.keys.purchase_feed], [token, owner, self.feed_max_len]))
        if count:
            self.on_change()
        return count

    async def prune(self, go_on: Callable[[], Awaitable[bool]] | None = None) -> int:
        """Remove every purchase expired now, in batches, each after `go_on()` said yes
        (the pruner's lease is still held); returns how many."""
        now = repr(float(self.clock.seconds()))
        total = 0
        for _ in range(PRUNE_MAX_BATCHES):
            if go_on is not None and not await go_on():
                break
            tokens = await EXPIRED.run(self.redis, [self.keys.purchase_expiry],
                                       [now, PRUNE_BATCH])
            if not tokens:
                break
            total += int(await REMOVE.run(
                self.redis, [self.keys.purchase_expiry, self.keys.purchase_feed],
                [self.keys.purchase(""), self.feed_max_len, *tokens]))
            if len(tokens) < PRUNE_BATCH:
                break
        if total:
            self.on_change()
        return total

    async def cursor(self) -> str:
        """The feed cursor now."""
        return await last_cursor(self.redis, self.keys.purchase_feed)

    async def feed(self, after: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
        """Changes after `after` (Gone when trimmed)."""
        page = await read_feed(self.redis, self.keys.purchase_feed, after, limit,
                               self.feed_page_max_bytes)
        return page.cursor, [decode_change(p) for p in page.entries]

    def snapshot_chunks(self) -> PurchaseSnapshot:
        """A chunk source over every unexpired purchase."""
        return PurchaseSnapshot(ScanChunks(
            SNAPSHOT_CHUNK, self.redis, [self.keys.purchase_expiry],
            [self.keys.purchase(""), repr(float(self.clock.seconds())), SNAPSHOT_CHUNK_TOKENS]))

    async def count(self) -> int:
        """Purchases in the database (expired but unpruned included)."""
        return int(await self.redis.execute("ZCARD", self.keys.purchase_expiry))


class PurchasePruner(LeasedJob):
    """Prunes expired purchases every `interval` seconds on the master holding `lease`.

    Runs twice would do no harm (a removal is idempotent) but cost Redis a scan each,
    so one master prunes.  A run that fails (cluster Redis away) is retried at the
    next lease bid, a few seconds later, instead of waiting a whole interval.
    """

    def __init__(self, purchases: Purchases, lease: Lease, clock: IReactorTime,
                 interval: float, on_hold: Callable[[bool], None],
                 on_pruned: Callable[[int], None] | None = None) -> None:
        super().__init__(lease, clock, interval, "purchase pruning", on_hold)
        self._purchases = purchases
        self._on_pruned = on_pruned

    async def work(self) -> bool:
        """One prune, batch by batch while the lease is kept; logs (never raises)."""
        try:
            count = await self._purchases.prune(go_on=self.lease.keep)
        except RedisUnavailable:
            log.warn("purchase pruning postponed: cluster Redis unavailable",
                     event="prune_postponed")
            return False
        except Exception:
            log.failure("while pruning purchases")
            return False
        if count:
            log.info("pruned {count} expired purchases", count=count, event="purchases_pruned")
        if self._on_pruned is not None:
            self._on_pruned(count)
        return True
