"""Least privilege in the cluster Redis: the ACL users of devcluster/redisacl.py on a real Redis."""

from __future__ import annotations

import os
import stat
import time

import pytest
import pytest_twisted

from stretchfs.config import REDIS_PASSWORD_ENV, parse_config
from stretchfs.devcluster.cluster import LocalCluster
from stretchfs.devcluster.redis_server import (
    RedisProcess,
    create_users,
    new_passwords,
    redis_command,
    write_aclfile,
)
from stretchfs.devcluster.redisacl import (
    MASTER_USER,
    NODE_USER,
    REPLICA_USER,
    SENTINEL_USER,
    example_config_lines,
)
from stretchfs.errors import ConfigError
from stretchfs.redisstore import RedisAddress, RedisReplyError, parse_redis_url
from tests.helpers import minimal_config

PREFIX = "sfs:"
USER_KEY = PREFIX + "user:alice"
INVENTORY_KEY = PREFIX + "inv:rows"
STORE_INVENTORY_KEY = PREFIX + "inv:s:store1"
SHA1 = "a" * 40


def _connect(url: str):
    from twisted.internet import reactor

    from stretchfs.redisstore import connect_redis

    return connect_redis(parse_redis_url(url), reactor, timeout=5.0)


@pytest.fixture
def seeded(redis_url, redis_server):
    """A database holding one user and one inventory row, written as the admin."""
    for command in (("HSET", USER_KEY, "username", "alice", "password", "hash"),
                    ("HSET", INVENTORY_KEY, SHA1, "row"),
                    ("HSET", STORE_INVENTORY_KEY, SHA1, "mp4:1")):
        assert redis_server.command(*command).startswith(b":")
    return redis_server


def _unchanged(server) -> bool:
    return (server.command("HGET", USER_KEY, "password") == b"$4"
            and server.command("HLEN", INVENTORY_KEY) == b":1"
            and server.command("HLEN", STORE_INVENTORY_KEY) == b":1")


def test_example_redis_conf_documents_the_acl_users(repo_root: str) -> None:
    """etc/redis.conf defines exactly the users devcluster.redisacl generates, default behind
    a password."""
    with open(os.path.join(repo_root, "etc", "redis.conf"), encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.startswith("user ")]
    wanted = example_config_lines(PREFIX)
    assert lines[:len(wanted)] == wanted
    assert wanted[0] == "user default on >change-me-admin-password ~* &* +@all"
    assert {line.split()[1] for line in wanted} == {"default", MASTER_USER, NODE_USER,
                                                    SENTINEL_USER, REPLICA_USER}


NODE_REFUSED = [
    ("GET", USER_KEY), ("SET", USER_KEY, "x"), ("DEL", USER_KEY), ("HGET", USER_KEY, "password"),
    ("HSET", USER_KEY, "password", "x"), ("HGETALL", INVENTORY_KEY),
    ("HSET", INVENTORY_KEY, SHA1, "forged"), ("HSET", STORE_INVENTORY_KEY, SHA1, "mp4:2"),
    ("DEL", INVENTORY_KEY), ("ZADD", PREFIX + "pur:expires", 1, "token"),
    ("FLUSHDB",), ("FLUSHALL",), ("KEYS", "*"), ("SCAN", "0"), ("CONFIG", "GET", "*"),
    ("ACL", "LIST"), ("EVAL", "return redis.call('HGET', KEYS[1], 'password')", 1, USER_KEY),
    ("EVAL", "return redis.call('DEL', ARGV[1] .. 'inv:rows')", 0, PREFIX),
    ("MULTI",),
]


@pytest.mark.parametrize("command", NODE_REFUSED, ids=lambda c: " ".join(map(str, c))[:40])
@pytest_twisted.ensureDeferred
async def test_store_login_cannot_read_or_write_users_or_inventory(seeded, command) -> None:
    """A prism's or store's Redis login is refused any command on user, inventory or
    purchase keys, and any admin command, and the data stays as it was."""
    node = _connect(seeded.login_url(NODE_USER, PREFIX))
    try:  # a script's own refused command reports "can't run this command"
        with pytest.raises(RedisReplyError, match="^NOPERM|can't run this command"):
            await node.execute(*command)
    finally:
        await node.close()
    assert _unchanged(seeded)


MASTER_REFUSED = [
    ("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "SET", "appendonly", "no"),
    ("ACL", "SETUSER", NODE_USER, "+@all"), ("MODULE", "LIST"),
    ("SCRIPT", "FLUSH"), ("GET", "other-app:secret"),
    ("EVAL", "return redis.call('GET', 'other-app:secret')", 0),
]


@pytest.mark.parametrize("command", MASTER_REFUSED, ids=lambda c: " ".join(map(str, c))[:40])
@pytest_twisted.ensureDeferred
async def test_master_login_cannot_administer_redis(seeded, command) -> None:
    """The master's login may not flush, reconfigure or administer Redis, nor touch keys
    outside the cluster prefix (its real operations run under it in tests/master)."""
    master = _connect(seeded.login_url(MASTER_USER, PREFIX))
    try:
        with pytest.raises(RedisReplyError, match="^NOPERM|can't access"):
            await master.execute(*command)
    finally:
        await master.close()
    assert _unchanged(seeded)


def test_dev_acl_file_holds_hashes_and_its_redis_admits_only_the_users(tmp_path) -> None:
    """`stretchfs dev up`'s ACL file is private and free of plaintext passwords; its Redis
    refuses anonymous clients and admits each role's login with only that role's rights."""
    passwords = new_passwords()
    path = write_aclfile(str(tmp_path / "users.acl"), PREFIX, passwords, "admin-secret-pw")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert not [p for p in list(passwords.values()) + ["admin-secret-pw"] if p in text]
    redis = RedisProcess(str(tmp_path / "redis"), appendonly=False, aclfile=path)
    redis.start()
    try:
        anonymous = RedisAddress(port=redis.port)
        node = RedisAddress(port=redis.port, username=NODE_USER, password=passwords[NODE_USER])
        master = RedisAddress(port=redis.port, username=MASTER_USER,
                              password=passwords[MASTER_USER])
        assert redis_command(anonymous, "GET", USER_KEY).startswith(b"-NOAUTH")
        assert redis_command(master, "HSET", USER_KEY, "active", "1") == b":1"
        assert redis_command(node, "HGET", USER_KEY, "active").startswith(b"-NOPERM")
        assert redis_command(node, "HSET", PREFIX + "ping:verdicts", "s1", "{}") == b":1"
    finally:
        redis.stop()


def test_dev_cluster_creates_users_on_an_external_redis_it_may_administer(seeded) -> None:
    """With REDIS_URL of an admin login the dev cluster creates the users and gives the
    master and the other roles their own logins."""
    cluster = LocalCluster("unused", say=lambda text: None)
    passwords = new_passwords()
    logins = cluster._redis_logins(seeded.url, passwords)
    node_url, node_password = logins[NODE_USER]
    assert parse_redis_url(node_url).username == NODE_USER and node_password
    node = RedisAddress(port=seeded.port, username=NODE_USER, password=node_password)
    assert redis_command(node, "GET", USER_KEY).startswith(b"-NOPERM")
    assert cluster.redis_acl


def test_dev_cluster_without_admin_rights_shares_the_given_login(seeded) -> None:
    """With REDIS_URL of a login that may not create users, every role uses that login
    and the dev cluster says so."""
    said: list[str] = []
    cluster = LocalCluster("unused", say=said.append)
    limited = seeded.login_url(MASTER_USER, PREFIX)
    assert create_users(parse_redis_url(limited), PREFIX, new_passwords()).startswith("NOPERM")
    logins = cluster._redis_logins(limited, new_passwords())
    assert set(logins.values()) == {(limited, "")}
    assert said and "warning" in said[0] and not cluster.redis_acl


def test_redis_password_comes_from_the_environment() -> None:
    """$STRETCHFS_REDIS_PASSWORD gives the Redis user's password, so no file holds it."""
    text = minimal_config("store", redis_url="redis://stretchfs-node@10.0.0.5:6379/0")
    config = parse_config("store", text, "s.toml", {REDIS_PASSWORD_ENV: "from-the-env"})
    assert config.redis.password == "from-the-env"
    with_file = text.replace("[redis]\n", "[redis]\npassword = 'in-the-file'\n")
    assert parse_config("store", with_file, "s.toml", {}).redis.password == "in-the-file"
    assert parse_config("store", with_file, "s.toml",
                        {REDIS_PASSWORD_ENV: "from-the-env"}).redis.password == "from-the-env"


def test_redis_user_without_a_password_is_refused() -> None:
    """A Redis user named in the URL with no password anywhere is a config error, not an
    anonymous login."""
    text = minimal_config("prism", redis_url="redis://stretchfs-node@10.0.0.5:6379/0")
    with pytest.raises(ConfigError, match=r"^p.toml: \[redis\] password: .*STRETCHFS_REDIS"):
        parse_config("prism", text, "p.toml", {})


@pytest_twisted.ensureDeferred
async def test_role_logs_in_as_its_acl_user(seeded) -> None:
    """A role whose [redis] url names a user and whose password is set separately logs in
    as that user (Redis 6 `AUTH user password`) and gets exactly its rights."""
    from twisted.internet import reactor

    from stretchfs.config import RedisSettings
    from stretchfs.redisstore import connect_cluster_redis

    login = parse_redis_url(seeded.login_url(NODE_USER, PREFIX))
    settings = RedisSettings(url="redis://{}@127.0.0.1:{}/0".format(NODE_USER, seeded.port),
                             password=login.password or "")
    node = connect_cluster_redis(settings, reactor)
    try:
        assert await node.execute("HSET", PREFIX + "ping:verdicts", "s1", "{}") == 1
        with pytest.raises(RedisReplyError, match="^NOPERM"):
            await node.execute("HGET", USER_KEY, "password")
    finally:
        await node.close()


@pytest_twisted.ensureDeferred
async def test_wrong_redis_password_fails_fast(seeded) -> None:
    """A login Redis refuses makes calls fail as unavailable within the deadline (no hang),
    and the log says why."""
    from twisted.internet import reactor
    from twisted.logger import capturedLogs

    from stretchfs.redisstore import RedisUnavailable, connect_redis

    seeded.login_url(NODE_USER, PREFIX)
    wrong = RedisAddress(port=seeded.port, username=NODE_USER, password="not-the-password")
    with capturedLogs() as events:
        node = connect_redis(wrong, reactor, timeout=0.5)
        try:
            with pytest.raises(RedisUnavailable):
                await node.execute("PING")
        finally:
            await node.close()
    refused = [e for e in events if e.get("event") == "redis_refused"]
    assert refused and "WRONGPASS" in refused[0]["why"]


def test_dev_cluster_with_an_unreachable_redis_url_says_so() -> None:
    """A REDIS_URL nobody answers on stops `dev up` at once with a clear reason."""
    from stretchfs.devcluster.ports import free_port

    cluster = LocalCluster("unused", say=lambda text: None)
    with pytest.raises(RuntimeError, match="REDIS_URL does not answer"):
        cluster._redis_logins("redis://127.0.0.1:{}/0".format(free_port()), new_passwords())


def test_script_and_transaction_writes_survive_a_restart_of_the_acl_redis(tmp_path) -> None:
    """Writes made by the master's Lua scripts (kept in the AOF as MULTI/EXEC) are still
    there after the ACL-protected Redis restarts: no acknowledged state is dropped."""
    passwords = new_passwords()
    admin = "admin-" + passwords[NODE_USER]
    path = write_aclfile(str(tmp_path / "users.acl"), PREFIX, passwords, admin)
    redis = RedisProcess(str(tmp_path / "redis"), appendonly=True, aclfile=path)
    redis.start()
    master = RedisAddress(port=redis.port, username=MASTER_USER, password=passwords[MASTER_USER])
    try:
        script = ("redis.call('HSET', KEYS[1], 'active', '1'); "
                  "return redis.call('SET', KEYS[2], 'v')")
        assert redis_command(master, "EVAL", script, "2", USER_KEY, PREFIX + "pur:t") == b"+OK"
        redis.stop()
        redis.start()
        # start() returns once Redis answers; with ACLs it answers NOAUTH before it has
        # read its AOF, so wait (bounded) until it no longer says LOADING
        for _ in range(100):
            reply = redis_command(master, "HGET", USER_KEY, "active")
            if not reply.startswith(b"-LOADING"):
                break
            time.sleep(0.05)
        assert reply == b"$1"
        assert redis_command(master, "GET", PREFIX + "pur:t") == b"$1"
        administrator = RedisAddress(port=redis.port, password=admin)
        assert redis_command(administrator, "DBSIZE") == b":2"
    finally:
        redis.stop()
