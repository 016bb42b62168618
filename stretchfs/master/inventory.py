"""The inventory ("lookup") database: which stores hold which content.

Redis layout (docs/redis-keys.md): one HASH per content id (store ->
"ext:size"), one HASH per store (sha1 -> "ext:size"), a counter of distinct
hashes, and the change feed STREAM.  A publish batch runs as one Lua script
that applies each change only when it changes the state and XADDs only the
effective changes, so replaying a batch changes nothing and adds no feed
entries.  Snapshots are built server-side in chunks of NDJSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from stretchfs.errors import InvalidInput
from stretchfs.master import validate
from stretchfs.master.feeds import FeedPage, last_cursor, read_feed
from stretchfs.master.keys import Keys
from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import RedisStore

MAX_PUBLISH_CHANGES = 10_000
MAX_LOOKUP_HASHES = 1000
SNAPSHOT_CHUNK_KEYS = 1000

# KEYS[1] feed, KEYS[2] distinct-hash counter, KEYS[3] the store's HASH
# ARGV[1] per-content key prefix, ARGV[2] store, ARGV[3] feed max length,
# then (op, hash, ext, size) per change; op 'a' (add) or 'r' (remove).
PUBLISH = LuaScript("""
local feed, counter, skey = KEYS[1], KEYS[2], KEYS[3]
local hprefix, store, maxlen = ARGV[1], ARGV[2], ARGV[3]
local applied, last = 0, false
for i = 4, #ARGV, 4 do
  local h = ARGV[i + 1]
  local hkey = hprefix .. h
  local cur = redis.call('HGET', hkey, store)
  if ARGV[i] == 'a' then
    local val = ARGV[i + 2] .. ':' .. ARGV[i + 3]
    if cur ~= val then
      if (not cur) and redis.call('EXISTS', hkey) == 0 then redis.call('INCR', counter) end
      redis.call('HSET', hkey, store, val)
      redis.call('HSET', skey, h, val)
      last = redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*', 'c',
                        'a|' .. h .. '|' .. store .. '|' .. val)
      applied = applied + 1
    end
  elseif cur then
    redis.call('HDEL', hkey, store)
    redis.call('HDEL', skey, h)
    if redis.call('EXISTS', hkey) == 0 then redis.call('DECR', counter) end
    last = redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*', 'c', 'r|' .. h .. '|' .. store)
    applied = applied + 1
  end
end
if not last then
  local tail = redis.call('XREVRANGE', feed, '+', '-', 'COUNT', 1)
  if #tail > 0 then last = tail[1][1] else last = '0-0' end
end
return {applied, last}
""")

# One chunk of the full snapshot: SCAN the per-content HASHes.
# ARGV[1] scan cursor, ARGV[2] MATCH pattern, ARGV[3] COUNT, ARGV[4] prefix length
# -> {next scan cursor, ndjson, rows}
SNAPSHOT_CHUNK = LuaScript("""
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local plen = tonumber(ARGV[4])
local out = {}
for _, key in ipairs(r[2]) do
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local stores = {}
    for j = 1, #flat, 2 do stores[#stores + 1] = '"' .. flat[j] .. '"' end
    local v = flat[2]
    local c = string.find(v, ':', 1, true)
    out[#out + 1] = '{"hash":"' .. string.sub(key, plen + 1) .. '","ext":"' ..
      string.sub(v, 1, c - 1) .. '","size":' .. string.sub(v, c + 1) ..
      ',"stores":[' .. table.concat(stores, ',') .. ']}\\n'
  end
end
return {r[1], table.concat(out), #out}
""")

# One chunk of a store's own inventory: HSCAN its HASH.
# KEYS[1] the store's HASH; ARGV[1] cursor, ARGV[2] COUNT -> {next, ndjson, rows}
STORE_CHUNK = LuaScript("""
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local flat = r[2]
local out = {}
for j = 1, #flat, 2 do
  local v = flat[j + 1]
  local c = string.find(v, ':', 1, true)
  out[#out + 1] = '{"hash":"' .. flat[j] .. '","ext":"' .. string.sub(v, 1, c - 1) ..
    '","size":' .. string.sub(v, c + 1) .. '}\\n'
end
return {r[1], table.concat(out), #out}
""")


@dataclass(frozen=True)
class Change:
    """One validated inventory change of a publish batch."""

    op: str
    hash: str
    ext: str = ""
    size: int = 0


def parse_changes(raw: Any) -> list[Change]:
    """Validate a publish batch's `changes` list (400 naming the first bad entry)."""
    if not isinstance(raw, list):
        raise InvalidInput("'changes' must be a list")
    if len(raw) > MAX_PUBLISH_CHANGES:
        raise InvalidInput("at most {} changes per batch".format(MAX_PUBLISH_CHANGES))
    changes = []
    for index, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise InvalidInput("must be an object")
            op = item.get("op")
            sha1 = validate.content_hash(item)
            if op == "add":
                changes.append(Change("a", sha1, validate.extension(item.get("ext")),
                                      validate.size(item.get("size"))))
            elif op == "remove":
                changes.append(Change("r", sha1))
            else:
                raise InvalidInput("'op' must be 'add' or 'remove'")
        except InvalidInput as exc:
            raise InvalidInput("changes[{}]: {}".format(index, exc)) from None
    return changes


def decode_change(payload: bytes) -> dict[str, Any]:
    """A feed entry payload as the change object of the API."""
    parts = payload.decode("utf-8").split("|")
    if parts[0] == "a":
        ext, _, size = parts[3].partition(":")
        return {"op": "add", "hash": parts[1], "store": parts[2], "ext": ext, "size": int(size)}
    return {"op": "remove", "hash": parts[1], "store": parts[2]}


def _row(sha1: str, flat: list[Any]) -> dict[str, Any] | None:
    if not flat:
        return None
    stores = sorted(text(name) for name in flat[0::2])
    ext, _, size = text(flat[1]).partition(":")
    return {"hash": sha1, "sha1": sha1, "ext": ext, "size": int(size), "stores": stores}


class Inventory:
    """Reads and writes of the inventory database and its feed."""

    def __init__(self, redis: RedisStore, keys: Keys, feed_max_len: int,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change
        self.redis = redis
        self.keys = keys
        self.feed_max_len = feed_max_len

    async def lookup(self, sha1: str) -> dict[str, Any] | None:
        """The row of `sha1` (`hash`, `ext`, `size`, `stores`), None when no store holds it."""
        return _row(sha1, await self.redis.execute("HGETALL", self.keys.content(sha1)))

    async def lookup_many(self, hashes: list[str]) -> dict[str, Any]:
        """Rows of several hashes in one round trip."""
        unique = list(dict.fromkeys(hashes))
        if not unique:
            return {}
        replies = await self.redis.pipeline(
            [("HGETALL", self.keys.content(h)) for h in unique])
        return {h: _row(h, flat) for h, flat in zip(unique, replies)}

    async def publish(self, store: str, changes: list[Change]) -> tuple[int, str]:
        """Apply a batch atomically; returns (effective changes, feed cursor)."""
        args: list[Any] = [self.keys.content_prefix, store, self.feed_max_len]
        for change in changes:
            args += [change.op, change.hash, change.ext, change.size]
        applied, cursor = await PUBLISH.run(
            self.redis, [self.keys.inventory_feed, self.keys.content_count,
                         self.keys.store_inventory(store)], args)
        if int(applied):
            self.on_change()
        return int(applied), text(cursor)

    async def cursor(self) -> str:
        """The feed cursor now (take it before streaming a snapshot)."""
        return await last_cursor(self.redis, self.keys.inventory_feed)

    async def feed(self, after: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
        """Changes after `after` (Gone when trimmed)."""
        page: FeedPage = await read_feed(self.redis, self.keys.inventory_feed, after, limit)
        return page.cursor, [decode_change(p) for p in page.entries]

    def snapshot_chunks(self) -> "ScanChunks":
        """A chunk source over every row of the inventory."""
        return ScanChunks(SNAPSHOT_CHUNK, self.redis, [],
                          [self.keys.content_pattern, SNAPSHOT_CHUNK_KEYS,
                           len(self.keys.content_prefix.encode("utf-8"))])

    def store_chunks(self, store: str) -> "ScanChunks":
        """A chunk source over one store's own inventory."""
        return ScanChunks(STORE_CHUNK, self.redis, [self.keys.store_inventory(store)],
                          [SNAPSHOT_CHUNK_KEYS])

    async def counts(self) -> dict[str, int]:
        """Distinct content count (for the dashboard)."""
        value = await self.redis.execute("GET", self.keys.content_count)
        return {"content": int(value or 0)}

    async def store_rows(self, stores: list[str]) -> dict[str, int]:
        """How many rows each store holds."""
        if not stores:
            return {}
        replies = await self.redis.pipeline(
            [("HLEN", self.keys.store_inventory(s)) for s in stores])
        return {s: int(n) for s, n in zip(stores, replies)}


class ScanChunks:
    """Iterates a SCAN-style Lua chunk script until its cursor comes back to 0."""

    def __init__(self, script: LuaScript, redis: RedisStore, keys: list[Any],
                 args: list[Any]) -> None:
        self._script = script
        self._redis = redis
        self._keys = keys
        self._args = args
        self._cursor = "0"
        self.rows = 0

    async def next(self) -> tuple[bytes, bool]:
        """The next NDJSON chunk and whether it was the last."""
        reply = await self._script.run(self._redis, self._keys, [self._cursor] + self._args)
        self._cursor = text(reply[0])
        self.rows += int(reply[2])
        return reply[1] or b"", self._cursor == "0"
