"""The RedisStore contract, against a real redis-server and against the fake."""

from __future__ import annotations

import pytest
import pytest_twisted

from stretchfs.errors import ConfigError
from stretchfs.redisstore import RedisReplyError, RedisUnavailable, parse_redis_url
from tests.fakes import FakeRedisStore


@pytest.fixture(params=["real", "fake"])
def store(request, redis_url):
    """A RedisStore: the txredisapi one on a real server, or the in-memory fake."""
    if request.param == "fake":
        from twisted.internet.task import Clock

        yield FakeRedisStore(Clock())
        return
    from twisted.internet import reactor

    from stretchfs.redisstore import connect_redis

    real = connect_redis(parse_redis_url(redis_url), reactor, timeout=5.0)
    yield real
    pytest_twisted.blockon(real.close())


@pytest_twisted.ensureDeferred
async def test_values_round_trip_as_bytes(store) -> None:
    """Stored strings come back as bytes, numbers are never guessed."""
    assert await store.execute("SET", "k", "007") in (b"OK", "OK")
    assert await store.execute("GET", "k") == b"007"
    assert await store.execute("GET", "missing") is None


@pytest_twisted.ensureDeferred
async def test_pipeline_answers_in_order(store) -> None:
    """A pipeline answers each command in the order sent."""
    replies = await store.pipeline([("SADD", "s", "a", "b"), ("SCARD", "s"),
                                    ("SISMEMBER", "s", "b"), ("DEL", "s")])
    assert replies == [2, 2, 1, 1]


@pytest_twisted.ensureDeferred
async def test_bad_command_is_a_reply_error(store) -> None:
    """A command Redis refuses raises RedisReplyError (not a hang, not a crash)."""
    with pytest.raises(RedisReplyError):
        await store.execute("NOSUCHCOMMAND", "x")


@pytest_twisted.ensureDeferred
async def test_unreachable_redis_fails_fast() -> None:
    """Calls to a Redis that is not there fail with RedisUnavailable within the deadline."""
    from twisted.internet import reactor

    from stretchfs.devcluster.ports import free_port
    from stretchfs.redisstore import connect_redis

    dead = connect_redis(parse_redis_url("redis://127.0.0.1:{}/0".format(free_port())),
                         reactor, timeout=0.3)
    try:
        with pytest.raises(RedisUnavailable):
            await dead.execute("PING")
    finally:
        await dead.close()


def test_redis_urls_parse() -> None:
    """redis:// and unix:// URLs give host, port, db, socket path and the ACL login."""
    tcp = parse_redis_url("redis://:pw@10.0.0.5:6380/3")
    assert (tcp.host, tcp.port, tcp.db, tcp.password, tcp.username) == (
        "10.0.0.5", 6380, 3, "pw", None)
    unix = parse_redis_url("unix:///run/redis.sock?db=2")
    assert (unix.unix_path, unix.db) == ("/run/redis.sock", 2)
    user = parse_redis_url("redis://stretchfs-node:p%40ss@10.0.0.5:6380/0")
    assert (user.username, user.password, user.host) == ("stretchfs-node", "p@ss", "10.0.0.5")
    unix_user = parse_redis_url("unix://stretchfs-node@/run/redis.sock?db=1")
    assert (unix_user.username, unix_user.unix_path, unix_user.db) == (
        "stretchfs-node", "/run/redis.sock", 1)
    with pytest.raises(ConfigError):
        parse_redis_url("http://nope")
    with pytest.raises(ConfigError):
        parse_redis_url("redis://host/notanumber")


@pytest_twisted.ensureDeferred
async def test_recovers_after_redis_hangs(tmp_path) -> None:
    """After the Redis process hangs past the deadline (SIGSTOP) and resumes, calls work again."""
    import os
    import signal

    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from stretchfs.redisstore import connect_redis
    from tests.helpers import start_redis_server

    server = start_redis_server(str(tmp_path / "redis"))
    db1 = "redis://127.0.0.1:{}/1".format(server.port)  # db 1: the SELECT path too
    client = connect_redis(parse_redis_url(db1), reactor, timeout=0.3, pool_size=1)
    try:
        assert await client.execute("PING") in (b"PONG", "PONG")
        os.kill(server.process.process.pid, signal.SIGSTOP)
        for _ in range(3):
            with pytest.raises(RedisUnavailable):
                await client.execute("PING")
        await deferLater(reactor, 3.0, lambda: None)  # reconnects time out meanwhile
        os.kill(server.process.process.pid, signal.SIGCONT)
        answer = None
        for _ in range(50):
            try:
                answer = await client.execute("PING")
                break
            except RedisUnavailable:
                await deferLater(reactor, 0.1, lambda: None)
        assert answer in (b"PONG", "PONG")
    finally:
        os.kill(server.process.process.pid, signal.SIGCONT)
        await client.close()
        server.stop()


@pytest_twisted.ensureDeferred
async def test_redis_that_cannot_serve_now_is_unavailable_not_a_bug(tmp_path) -> None:
    """Error replies meaning "cannot serve now" (here READONLY: the server became a
    replica after a failover) are RedisUnavailable (503, readiness blocked), not a 500."""
    from twisted.internet import reactor

    from stretchfs.redisstore import connect_redis
    from tests.helpers import start_redis_server

    server = start_redis_server(str(tmp_path))
    client = connect_redis(parse_redis_url(server.url), reactor, timeout=5.0)
    try:
        assert server.command("REPLICAOF", "127.0.0.1", "1").startswith(b"+OK")
        with pytest.raises(RedisUnavailable, match="READONLY"):
            await client.execute("SET", "k", "v")
        assert server.command("REPLICAOF", "NO", "ONE").startswith(b"+OK")
        assert await client.execute("SET", "k", "v") in (b"OK", "OK")
    finally:
        await client.close()
        server.stop()
