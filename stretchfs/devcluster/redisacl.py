"""Least-privilege Redis ACL users of the cluster (Redis >= 6.2).

The master's user may run exactly the commands the master sends, on keys
under the cluster prefix; prisms and stores share one user that may only
cast, withdraw and read ping-net votes and verdicts.  A stolen prism or store
config therefore cannot read or rewrite users, sessions, inventory or
purchases.  These rules are the one source of truth: `etc/redis.conf`
documents them (a test checks it matches) and `stretchfs dev up` applies them.

The default user is the administrator, behind a password, not switched off:
Redis 7.0 replays the append-only file with the default user's rights, and
with it off every MULTI/EXEC there (which is how Redis logs a Lua script's
writes, i.e. almost every write of the master) is refused at load, silently
dropping acknowledged users, purchases and inventory at the first restart.
"""

from __future__ import annotations

import hashlib

from stretchfs.master.keys import glob_escape
from stretchfs.pingnet.keys import down_key, verdicts_key, version_key, votes_key

MASTER_USER = "stretchfs-master"
NODE_USER = "stretchfs-node"
# Behind Sentinel (docs/ha.md): the Sentinels log in to every Redis server as one user,
# the replicas to their primary as another; neither may touch a key.
SENTINEL_USER = "stretchfs-sentinel"
REPLICA_USER = "stretchfs-replica"

# Every command the master sends, directly or from its Lua scripts (which
# Redis checks against the same rules), plus PING (health), SELECT (db N),
# ROLE (behind Sentinel, a new connection checks it reached the primary) and
# WAIT (writes acknowledged only once replicas hold them).
MASTER_COMMANDS: tuple[str, ...] = (
    "ping", "select", "role", "wait", "eval", "evalsha",
    "exists", "get", "set", "del", "expire",
    "hget", "hmget", "hgetall", "hset", "hsetnx", "hdel", "hincrby", "hlen", "hscan",
    "sadd", "srem", "smembers", "scard",
    "zadd", "zrem", "zcard", "zrangebyscore", "zscan",
    "xadd", "xrange", "xrevrange", "xinfo|stream",
)

# The ping net's ballot box (stretchfs/pingnet/ballot.py) and nothing else.
NODE_COMMANDS = (
    "ping", "select", "role", "eval", "get", "incr",
    "zadd", "zrem", "zremrangebyscore", "zrangebyscore", "pexpire",
    "hset", "hgetall", "hexists", "hdel",
)


# What Redis Sentinel sends to the servers it watches (Redis's Sentinel docs, "ACL").
SENTINEL_COMMANDS = (
    "ping", "info", "role", "multi", "exec", "slaveof", "replicaof", "config|rewrite",
    "client|setname", "client|kill", "script|kill", "subscribe", "publish",
)

# What a replica sends to its primary to copy it.
REPLICA_COMMANDS = ("ping", "psync", "replconf")


def master_key_patterns(prefix: str) -> tuple[str, ...]:
    """Key patterns of the master: everything under the cluster prefix."""
    return (glob_escape(prefix) + "*",)


def node_key_patterns(prefix: str) -> tuple[str, ...]:
    """Key patterns of prisms and stores: the ping net's votes and verdicts only."""
    return (glob_escape(votes_key(prefix, "")) + "*", glob_escape(verdicts_key(prefix)),
            glob_escape(down_key(prefix)), glob_escape(version_key(prefix)))


def password_hash_rule(password: str) -> str:
    """An ACL password rule that stores only the SHA-256 of `password`."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def acl_rules(user: str, prefix: str, password_rule: str) -> list[str]:
    """The ACL SETUSER rules of `user` (MASTER_USER or NODE_USER) for `prefix`.

    `password_rule` is ``>plaintext`` or ``#sha256hex`` (see `password_hash_rule`).
    """
    channels = ["resetchannels"]
    if user == MASTER_USER:
        patterns, commands = master_key_patterns(prefix), MASTER_COMMANDS
    elif user == NODE_USER:
        patterns, commands = node_key_patterns(prefix), NODE_COMMANDS
    elif user == SENTINEL_USER:
        # Sentinels find each other over the __sentinel__:hello channel of the servers.
        patterns, commands, channels = (), SENTINEL_COMMANDS, ["&__sentinel__:*"]
    elif user == REPLICA_USER:
        patterns, commands = (), REPLICA_COMMANDS
    else:
        raise ValueError("unknown StretchFS Redis user {!r}".format(user))
    return (["reset", "on", password_rule] + channels
            + ["~" + pattern for pattern in patterns]
            + ["-@all"] + ["+" + command for command in commands])


def default_user_line(password_rule: str) -> str:
    """The default user: every right, behind a password (see the module doc for why)."""
    return "user default on {} ~* &* +@all".format(password_rule)


def acl_config_line(user: str, prefix: str, password_rule: str) -> str:
    """The `user ...` line for redis.conf (or an ACL file) defining `user`."""
    return " ".join(["user", user] + acl_rules(user, prefix, password_rule))


PLACEHOLDERS = {MASTER_USER: ">change-me-master-password", NODE_USER: ">change-me-node-password",
                SENTINEL_USER: ">change-me-sentinel-password",
                REPLICA_USER: ">change-me-replica-password"}
ADMIN_PLACEHOLDER = ">change-me-admin-password"


def example_config_lines(prefix: str) -> list[str]:
    """The redis.conf `user` lines for `prefix`, with placeholder passwords to replace."""
    return [default_user_line(ADMIN_PLACEHOLDER)] + [
        acl_config_line(user, prefix, placeholder) for user, placeholder in PLACEHOLDERS.items()]


def main(argv: list[str] | None = None) -> int:
    """`python -m stretchfs.devcluster.redisacl [PREFIX]`: print `example_config_lines` for a
    `[redis] prefix` other than the default sfs: (etc/redis.conf has those)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    print("\n".join(example_config_lines(args[0] if args else "sfs:")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
