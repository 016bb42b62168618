"""Lua scripts run by EVALSHA, loaded on first use (and again after a Redis restart)."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from stretchfs.redisstore import Arg, RedisReplyError, RedisStore


class LuaScript:
    """A server-side script: EVALSHA, falling back to EVAL when Redis lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def run(self, redis: RedisStore, keys: Sequence[Arg], args: Sequence[Arg],
                  durable: bool = False) -> Any:
        """Run the script atomically with `keys` and `args`; returns its reply.  A `durable`
        run is acknowledged only once the replicas hold it (`RedisStore.execute_durable`)."""
        send = redis.execute_durable if durable else redis.execute
        try:
            return await send("EVALSHA", self.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if "NOSCRIPT" not in str(exc):
                raise
        return await send("EVAL", self.source, len(keys), *keys, *args)


def text(value: object) -> str:
    """A Redis reply as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)
