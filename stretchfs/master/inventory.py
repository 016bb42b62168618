"""The inventory ("lookup") database: which stores hold which content.

Redis layout (docs/redis-keys.md): one HASH per store (sha1 -> "ext:size"),
the authoritative per-store state; one HASH of rows (sha1 -> the content's
row already rendered as a JSON line: hash, ext, size, stores), kept in step
by the same script and used for lookups and the full snapshot; and the
change feed STREAM; and one HASH counting hashes by number of copies
(n -> how many rows list n stores), moved by the same script whenever a row
gains or loses a store, so the dashboard reads it in one HGETALL instead of
scanning every row.  A publish batch runs as one Lua script that applies
each change only when it changes the state and XADDs only the effective
changes, so replaying a batch changes nothing and adds no feed entries.
Snapshots are HSCANs whose chunks come back from Redis as NDJSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from stretchfs.errors import InvalidInput
from stretchfs.master import validate
from stretchfs.master.feeds import FeedPage, last_cursor, read_feed
from stretchfs.master.keys import Keys
from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import Arg, RedisStore
from stretchfs.wire.identifiers import EXT_RE, SHA1_RE

MAX_PUBLISH_CHANGES = 10_000
MAX_LOOKUP_HASHES = 1000
SNAPSHOT_CHUNK_KEYS = 5000

# Row helpers: a row line is '{"hash":"<h>","ext":"<e>","size":<n>,"stores":["a","b"]}'
_ROW_LUA = """
local function render(h, val, stores)
  local c = string.find(val, ':', 1, true)
  return '{"hash":"' .. h .. '","ext":"' .. string.sub(val, 1, c - 1) .. '","size":' ..
    string.sub(val, c + 1) .. ',"stores":[' .. table.concat(stores, ',') .. ']}'
end
local function parse(row)
  -- -> "ext:size", list of quoted store names
  local e1 = string.find(row, '","size":', 1, true)
  local s1 = string.find(row, ',"stores":[', e1, true)
  local val = string.sub(row, 59, e1 - 1) .. ':' .. string.sub(row, e1 + 9, s1 - 1)
  local stores = {}
  for name in string.gmatch(string.sub(row, s1 + 11, -3), '[^,]+') do
    stores[#stores + 1] = name
  end
  return val, stores
end
"""

# KEYS[1] feed, KEYS[2] rows HASH, KEYS[3] the store's HASH, KEYS[4] copies HASH
# ARGV[1] store, ARGV[2] feed max length, ARGV[3] the batch packed one change
# per line: op ('a' add, 'r' remove), the 40-hex hash, then for an add
# "ext:size" (see `parse_changes`).
PUBLISH = LuaScript(_ROW_LUA + """
local feed, rows, skey, copies = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function recount(before, after)
  if before == after then return end
  if before > 0 and redis.call('HINCRBY', copies, before, -1) <= 0 then
    redis.call('HDEL', copies, before)
  end
  if after > 0 then redis.call('HINCRBY', copies, after, 1) end
end
local store, maxlen = ARGV[1], ARGV[2]
local quoted = '"' .. store .. '"'
local base = string.sub(skey, 1, #skey - #store)  -- "<prefix>inv:s:", any store's HASH
local applied, last = 0, false
for line in string.gmatch(ARGV[3], '[^\\n]+') do
  local h = string.sub(line, 2, 41)
  local cur = redis.call('HGET', skey, h)
  if string.sub(line, 1, 1) == 'a' then
    local val = string.sub(line, 42)
    if cur ~= val then
      redis.call('HSET', skey, h, val)
      local row = redis.call('HGET', rows, h)
      local stores = {}
      if row then
        local _
        _, stores = parse(row)
        local found = false
        for _, name in ipairs(stores) do if name == quoted then found = true end end
        if not found then
          stores[#stores + 1] = quoted
          recount(#stores - 1, #stores)
        end
      else
        stores[1] = quoted
        recount(0, 1)
      end
      redis.call('HSET', rows, h, render(h, val, stores))
      last = redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*', 'c',
                        'a|' .. h .. '|' .. store .. '|' .. val)
      applied = applied + 1
    end
  elseif cur then
    redis.call('HDEL', skey, h)
    local rest = ''
    local row = redis.call('HGET', rows, h)
    if row then
      local val, stores = parse(row)
      local kept = {}
      for _, name in ipairs(stores) do if name ~= quoted then kept[#kept + 1] = name end end
      recount(#stores, #kept)
      if #kept == 0 then
        redis.call('HDEL', rows, h)
      else
        -- The row's ext:size may have come from the store that just left: take a
        -- remaining holder's own (stores of one hash can differ in extension).
        local theirs = redis.call('HGET', base .. string.sub(kept[1], 2, -2), h)
        val = theirs or val
        redis.call('HSET', rows, h, render(h, val, kept))
        rest = '|' .. val
      end
    end
    last = redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*', 'c',
                      'r|' .. h .. '|' .. store .. rest)
    applied = applied + 1
  end
end
if not last then
  local tail = redis.call('XREVRANGE', feed, '+', '-', 'COUNT', 1)
  if #tail > 0 then last = tail[1][1] else last = '0-0' end
end
return {applied, last}
""")

# One chunk of the full snapshot: HSCAN the rows HASH; values are the lines.
# KEYS[1] rows HASH; ARGV[1] cursor, ARGV[2] COUNT -> {next cursor, ndjson, rows}
SNAPSHOT_CHUNK = LuaScript("""
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local flat = r[2]
local out = {}
for j = 2, #flat, 2 do out[#out + 1] = flat[j] end
if #out == 0 then return {r[1], '', 0} end
return {r[1], table.concat(out, '\\n') .. '\\n', #out}
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


def _check_change(index: int, item: object) -> Change:
    """Validate one change (the slow path, with a precise message)."""
    try:
        if not isinstance(item, dict):
            raise InvalidInput("must be an object")
        op = item.get("op")
        sha1 = validate.content_hash(item)
        if op == "add":
            return Change("a", sha1, validate.extension(item.get("ext")),
                          validate.size(item.get("size")))
        if op == "remove":
            return Change("r", sha1)
        raise InvalidInput("'op' must be 'add' or 'remove'")
    except InvalidInput as exc:
        raise InvalidInput("changes[{}]: {}".format(index, exc)) from None


def parse_changes(raw: object) -> "PackedBatch":
    """Validate a publish batch's `changes` list (400 naming the first bad entry).

    The common case (well-formed rows) takes a fast path that checks each row
    inline and packs it straight into the script's one-line-per-change form.
    """
    if not isinstance(raw, list):
        raise InvalidInput("'changes' must be a list")
    if len(raw) > MAX_PUBLISH_CHANGES:
        raise InvalidInput("at most {} changes per batch".format(MAX_PUBLISH_CHANGES))
    sha_ok = SHA1_RE.match
    ext_ok = EXT_RE.match
    lines: list[str] = []
    append = lines.append
    for index, item in enumerate(raw):
        if type(item) is dict:
            sha1 = item.get("hash")
            if sha1 is None:
                sha1 = item.get("sha1")
            op = item.get("op")
            if type(sha1) is str and sha_ok(sha1):
                if op == "add":
                    ext = item.get("ext")
                    size = item.get("size")
                    if type(ext) is str and ext_ok(ext) and type(size) is int and \
                            0 <= size < 2**63:
                        append("a{}{}:{}".format(sha1, ext, size))
                        continue
                elif op == "remove":
                    append("r" + sha1)
                    continue
        _check_change(index, item)  # raises with the reason
        raise InvalidInput("changes[{}]: invalid change".format(index))
    last = {line[1:41]: index for index, line in enumerate(lines)}
    if len(last) != len(lines):
        # Only the last change of a hash counts (the script is atomic, nobody sees
        # the ones before): a replayed batch then stays a no-op.
        lines = [line for index, line in enumerate(lines) if last[line[1:41]] == index]
    return PackedBatch("\n".join(lines), len(lines))


@dataclass(frozen=True)
class PackedBatch:
    """A validated batch, packed for the publish script."""

    packed: str
    count: int

    def __len__(self) -> int:
        return self.count


def decode_change(payload: bytes) -> dict[str, Any]:
    """A feed entry payload as the change object of the API."""
    parts = payload.decode("utf-8").split("|")
    if parts[0] == "a":
        ext, _, size = parts[3].partition(":")
        return {"op": "add", "hash": parts[1], "store": parts[2], "ext": ext, "size": int(size)}
    change: dict[str, Any] = {"op": "remove", "hash": parts[1], "store": parts[2]}
    if len(parts) > 3:  # the copies left: the row's ext:size now
        ext, _, size = parts[3].partition(":")
        change.update(ext=ext, size=int(size))
    return change


def _row(sha1: str, line: Any) -> dict[str, Any] | None:
    if line is None:
        return None
    row = json.loads(line)
    row["sha1"] = sha1
    row["stores"] = sorted(row["stores"])
    return row


class Inventory:
    """Reads and writes of the inventory database and its feed."""

    def __init__(self, redis: RedisStore, keys: Keys, feed_max_len: int, *,
                 feed_page_max_bytes: int, on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change
        self.redis = redis
        self.keys = keys
        self.feed_max_len = feed_max_len
        self.feed_page_max_bytes = feed_page_max_bytes

    async def lookup(self, sha1: str) -> dict[str, Any] | None:
        """The row of `sha1` (`hash`, `ext`, `size`, `stores`), None when no store holds it."""
        return _row(sha1, await self.redis.execute("HGET", self.keys.inventory_rows, sha1))

    async def lookup_many(self, hashes: list[str]) -> dict[str, Any]:
        """Rows of several hashes in one round trip."""
        unique = list(dict.fromkeys(hashes))
        if not unique:
            return {}
        lines = await self.redis.execute("HMGET", self.keys.inventory_rows, *unique)
        return {h: _row(h, line) for h, line in zip(unique, lines)}

    async def publish(self, store: str, batch: PackedBatch) -> tuple[int, str]:
        """Apply a batch atomically; returns (effective changes, feed cursor)."""
        if not batch.count:
            return 0, await self.cursor()
        applied, cursor = await PUBLISH.run(
            self.redis, [self.keys.inventory_feed, self.keys.inventory_rows,
                         self.keys.store_inventory(store), self.keys.inventory_copies],
            [store, self.feed_max_len, batch.packed], durable=True)
        if int(applied):
            self.on_change()
        return int(applied), text(cursor)

    async def cursor(self) -> str:
        """The feed cursor now (take it before streaming a snapshot)."""
        return await last_cursor(self.redis, self.keys.inventory_feed)

    async def feed(self, after: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
        """Changes after `after` (Gone when trimmed)."""
        page: FeedPage = await read_feed(self.redis, self.keys.inventory_feed, after, limit,
                                         self.feed_page_max_bytes)
        return page.cursor, [decode_change(p) for p in page.entries]

    def snapshot_chunks(self) -> "ScanChunks":
        """A chunk source over every row of the inventory."""
        return ScanChunks(SNAPSHOT_CHUNK, self.redis, [self.keys.inventory_rows],
                          [SNAPSHOT_CHUNK_KEYS])

    def store_chunks(self, store: str) -> "ScanChunks":
        """A chunk source over one store's own inventory."""
        return ScanChunks(STORE_CHUNK, self.redis, [self.keys.store_inventory(store)],
                          [SNAPSHOT_CHUNK_KEYS])

    async def counts(self) -> dict[str, int]:
        """Distinct content count (for the dashboard)."""
        return {"content": int(await self.redis.execute("HLEN", self.keys.inventory_rows))}

    async def copies(self) -> dict[str, Any]:
        """Hashes by number of copies: `{"1": n, "2": n, "3+": n}`, and `complete`,
        False when the counters miss rows (a database written before they existed)."""
        flat = await self.redis.pipeline([("HGETALL", self.keys.inventory_copies),
                                          ("HLEN", self.keys.inventory_rows)])
        counters, rows = flat
        if isinstance(counters, dict):
            pairs = list(counters.items())
        else:
            pairs = list(zip(counters[::2], counters[1::2]))
        grouped = {"1": 0, "2": 0, "3+": 0}
        for copies, count in pairs:
            n = int(copies)
            grouped["3+" if n >= 3 else str(n)] += int(count)
        return {**grouped, "complete": sum(grouped.values()) == int(rows)}

    async def store_rows(self, stores: list[str]) -> dict[str, int]:
        """How many rows each store holds."""
        if not stores:
            return {}
        replies = await self.redis.pipeline(
            [("HLEN", self.keys.store_inventory(s)) for s in stores])
        return {s: int(n) for s, n in zip(stores, replies)}


class ScanChunks:
    """Iterates a SCAN-style Lua chunk script until its cursor comes back to 0."""

    def __init__(self, script: LuaScript, redis: RedisStore, keys: list[Arg],
                 args: list[Arg]) -> None:
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
