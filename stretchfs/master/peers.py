"""The peer registry: prisms and stores with their operator flags.

A node registers itself at start-up; that writes its address fields only.
`active` and `writable` are set once, when the peer is first seen, and from
then on only by `update` (an operator, or a store whose disk is full): a
restart never overrides an operator's `active=false`.  `drained` is set by
`peer drain` (master/drain.py) and cleared when the store is made writable.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from stretchfs.errors import InvalidInput, NotFound
from stretchfs.master import validate
from stretchfs.master.keys import Keys
from stretchfs.master.lua import LuaScript, text
from stretchfs.redisstore import RedisStore

ROLES = ("prism", "store")
_INT_FIELDS = ("port", "ping_port")
_FLOAT_FIELDS = ("registered", "updated")
_FLAGS = ("active", "writable")
_BOOL_FIELDS = _FLAGS + ("drained",)

# KEYS[1] peer HASH, KEYS[2] peer name SET; ARGV[1] name, ARGV[2] now,
# then field/value pairs of the address -> the record, flat
REGISTER = LuaScript("""
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'updated', ARGV[2])
redis.call('HSETNX', KEYS[1], 'registered', ARGV[2])
redis.call('HSETNX', KEYS[1], 'active', '1')
redis.call('HSETNX', KEYS[1], 'writable', '1')
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
""")

# KEYS[1] peer HASH; ARGV[1] now, then flag/value pairs -> the record, or {} if unknown
UPDATE = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'updated', ARGV[1])
return redis.call('HGETALL', KEYS[1])
""")


def decode_record(flat: list[Any]) -> dict[str, Any] | None:
    """A peer HASH (flat HGETALL reply) as the API's peer record."""
    if not flat:
        return None
    raw = {text(k): text(v) for k, v in zip(flat[0::2], flat[1::2])}
    record: dict[str, Any] = {}
    for name in ("name", "role", "host", "port", "ping_port", "site", "zone", "url",
                 "active", "writable", "drained", "registered", "updated"):
        value = raw.get(name, "")
        if name in _INT_FIELDS:
            record[name] = int(value or 0)
        elif name in _FLOAT_FIELDS:
            record[name] = float(value or 0)
        elif name in _BOOL_FIELDS:
            record[name] = value == "1"
        else:
            record[name] = value
    return record


def parse_registration(body: dict[str, Any]) -> dict[str, str]:
    """Validate a registration body; the address fields to store."""
    name = validate.peer_name(validate.field(body, "name", str))
    role = validate.field(body, "role", str)
    if role not in ROLES:
        raise InvalidInput("'role' must be 'prism' or 'store'")
    host = validate.text(validate.field(body, "host", str), "host")
    if not host:
        raise InvalidInput("'host' must not be empty")
    port = validate.field(body, "port", int)
    if not 1 <= port <= 65535:
        raise InvalidInput("'port' must be 1-65535")
    ping_port = validate.field(body, "ping_port", int, 0)
    if not 0 <= ping_port <= 65535:
        raise InvalidInput("'ping_port' must be 0-65535")
    site = validate.peer_name(validate.field(body, "site", str, "local"), "site")
    zone = validate.peer_name(validate.field(body, "zone", str, "a"), "zone")
    url = validate.text(validate.field(body, "url", str, ""), "url", 1024)
    if url and not url.startswith(("http://", "https://")):
        raise InvalidInput("'url' must be an http:// or https:// URL")
    url = (url or "http://{}:{}".format(host, port)).rstrip("/")
    return {"name": name, "role": role, "host": host, "port": str(port),
            "ping_port": str(ping_port), "site": site, "zone": zone, "url": url}


def parse_flags(body: dict[str, Any]) -> dict[str, bool]:
    """Validate an update body: `active` and/or `writable` booleans."""
    unknown = sorted(set(body) - set(_FLAGS))
    if unknown:
        raise InvalidInput("unknown field '{}' (expected active, writable)".format(unknown[0]))
    flags = {name: validate.field(body, name, bool) for name in _FLAGS if name in body}
    if not flags:
        raise InvalidInput("expected 'active' and/or 'writable'")
    if flags.get("writable"):
        flags["drained"] = False  # a store made writable again is no longer drained
    return flags


class PeerRegistry:
    """Registered prisms and stores on the cluster Redis."""

    def __init__(self, redis: RedisStore, keys: Keys, clock: IReactorTime) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock

    async def register(self, address: dict[str, str]) -> dict[str, Any]:
        """Register or refresh a peer's address; flags of a known peer are kept."""
        args: list[Any] = [address["name"], repr(float(self.clock.seconds()))]
        for key, value in address.items():
            args += [key, value]
        flat = await REGISTER.run(self.redis, [self.keys.peer(address["name"]),
                                               self.keys.peers], args)
        record = decode_record(flat)
        assert record is not None
        return record

    async def get(self, name: str) -> dict[str, Any]:
        """The record of `name` (NotFound when unknown)."""
        record = decode_record(await self.redis.execute("HGETALL", self.keys.peer(name)))
        if record is None:
            raise NotFound("no peer named {}".format(name))
        return record

    async def list(self) -> list[dict[str, Any]]:
        """Every registered peer, sorted by name."""
        names = sorted(text(n) for n in await self.redis.execute("SMEMBERS", self.keys.peers))
        if not names:
            return []
        replies = await self.redis.pipeline([("HGETALL", self.keys.peer(n)) for n in names])
        return [r for r in (decode_record(flat) for flat in replies) if r is not None]

    async def update(self, name: str, flags: dict[str, bool]) -> dict[str, Any]:
        """Set operator flags of a known peer."""
        args: list[Any] = [repr(float(self.clock.seconds()))]
        for key, value in flags.items():
            args += [key, "1" if value else "0"]
        record = decode_record(await UPDATE.run(self.redis, [self.keys.peer(name)], args))
        if record is None:
            raise NotFound("no peer named {}".format(name))
        return record

    async def remove(self, name: str) -> None:
        """Forget a peer (NotFound when unknown)."""
        removed, _ = await self.redis.pipeline([("DEL", self.keys.peer(name)),
                                                ("SREM", self.keys.peers, name)])
        if not int(removed):
            raise NotFound("no peer named {}".format(name))
