"""The Python twin of ballot.TALLY_SCRIPT for FakeRedisStore (test_ballot.py checks that
both give the same results on the same operations)."""

from __future__ import annotations

import json
from typing import Any

from stretchfs.pingnet.ballot import TALLY_SCRIPT
from tests.fakes import FakeRedisStore


def tally(store: FakeRedisStore, keys: list[bytes], args: list[bytes]) -> int:
    """Cast or withdraw, recount, and update the down hash and version, as the script does."""
    votes, down, version = keys
    target, voter, op, now = args[:4]
    store.run("ZREMRANGEBYSCORE", votes, "-inf", now)
    if op == b"cast":
        store.run("ZADD", votes, args[4], voter)
        store.run("PEXPIRE", votes, args[5])
    elif op == b"withdraw":
        store.run("ZREM", votes, voter)
    live = set(store.run("ZRANGEBYSCORE", votes, b"(" + now, "+inf"))
    found: Any = None
    i = 7
    for _ in range(int(args[6])):
        size = int(args[i])
        electorate = [n for n in args[i + 1:i + 1 + size] if store.run("HGET", down, n) is None]
        i += size + 1
        voters = [n for n in electorate if n in live]
        needed = len(electorate) // 2 + 1
        if found is None and electorate and len(voters) >= needed:
            found = (voters, needed)
    was = store.run("HGET", down, target) is not None
    if found is not None and not was:
        record = {"since": float(now), "by": voter.decode(),
                  "voters": [v.decode() for v in found[0]], "needed": found[1]}
        store.run("HSET", down, target, json.dumps(record))
        store.run("INCR", version)
    elif was and found is None:
        store.run("HDEL", down, target)
        store.run("INCR", version)
    return 1 if found is not None else 0


def install(store: FakeRedisStore) -> FakeRedisStore:
    """Teach `store` the tally script; returns it."""
    store.scripts[TALLY_SCRIPT.encode()] = tally
    return store
