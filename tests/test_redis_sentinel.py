"""Writes acknowledged after replication (WAIT), and a Redis reached through Sentinel:
real redis-server processes on loopback."""

from __future__ import annotations

import os
import signal
import time

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from stretchfs.devcluster.ports import free_port
from stretchfs.devcluster.redis_server import new_passwords
from stretchfs.devcluster.redisacl import MASTER_USER, NODE_USER
from stretchfs.devcluster.sentinel import SERVICE, RedisHA
from stretchfs.redisstore import (
    RedisAddress,
    ReplicasBehind,
    connect_redis,
    connect_sentinel,
    parse_redis_url,
    sentinel_problem,
)
from tests.fakes import FakeRedisStore


@pytest_twisted.ensureDeferred
async def test_durable_write_without_enough_replicas_is_replicas_behind(redis_url) -> None:
    """With min_replica_acks=1 and no replica, a write is applied but answers ReplicasBehind
    (a 503: the client retries) once WAIT's timeout (half the deadline) passes."""
    from twisted.internet import reactor

    store = connect_redis(parse_redis_url(redis_url), reactor, timeout=0.4, min_replica_acks=1)
    try:
        with pytest.raises(ReplicasBehind):
            await store.execute_durable("SET", "durable", "1")
        assert await store.execute("GET", "durable") == b"1"
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_durable_write_with_no_acks_required_is_a_plain_write(redis_url) -> None:
    """With min_replica_acks=0 a durable write is answered like any other write."""
    from twisted.internet import reactor

    store = connect_redis(parse_redis_url(redis_url), reactor, timeout=0.4)
    try:
        assert await store.execute_durable("SET", "plain", "1") in (b"OK", "OK")
    finally:
        await store.close()


def test_fake_durable_write_is_applied_then_refused_when_replicas_lag() -> None:
    """The fake applies a durable write, then fails it when told the replicas lag."""
    fake = FakeRedisStore(Clock())
    fake.replicas_behind = True
    failure = fake.execute_durable("SET", "k", "v")
    assert failure.result.check(ReplicasBehind)
    failure.addErrback(lambda _: None)
    assert fake.data[b"k"] == b"v"
    assert fake.durable == [(b"SET", b"k", b"v")]


def test_no_live_sentinel_is_not_now() -> None:
    """A Sentinel list where nothing listens is a problem that may pass, not a bad config."""
    why, never = sentinel_problem(["127.0.0.1:{}".format(free_port())], SERVICE, 0.5)
    assert "no Sentinel answers" in why
    assert never is False


def test_a_plain_redis_is_no_sentinel(redis_server) -> None:
    """A Sentinel address that is a plain Redis can never work."""
    port = parse_redis_url(redis_server.url).port
    why, never = sentinel_problem(["127.0.0.1:{}".format(port)], SERVICE, 0.5)
    assert "not a Sentinel" in why
    assert never is True


@pytest.fixture(scope="module")
def redis_ha(tmp_path_factory: pytest.TempPathFactory):
    """A primary, two replicas and three Sentinels (dev timings), for this module."""
    ha = RedisHA(str(tmp_path_factory.mktemp("ha")), new_passwords(ha=True), "admin-pw")
    try:
        ha.start(timeout=30.0)
        yield ha
    finally:
        ha.stop()


def test_sentinel_knows_the_service_and_not_others(redis_ha) -> None:
    """A live Sentinel answers for the dev service; an unknown service can never work."""
    assert sentinel_problem(redis_ha.sentinel_addresses, SERVICE, 1.0) == ("", False)
    why, never = sentinel_problem(redis_ha.sentinel_addresses, "no-such-service", 1.0)
    assert "knows no service 'no-such-service'" in why
    assert never is True


def test_one_knowing_sentinel_is_enough(redis_ha, redis_server) -> None:
    """A list where one entry is no Sentinel still starts when another knows the service."""
    plain = "127.0.0.1:{}".format(parse_redis_url(redis_server.url).port)
    assert sentinel_problem([plain] + redis_ha.sentinel_addresses[:1], SERVICE, 1.0) == (
        "", False)


def test_role_users_and_sentinel_users_are_in_every_server(redis_ha) -> None:
    """Every server has the same ACL file (any of them may be promoted)."""
    files = [open(os.path.join(s.folder, "users.acl"), encoding="utf-8").read()
             for s in redis_ha.servers]
    assert len(set(files)) == 1 and "stretchfs-sentinel" in files[0]


@pytest_twisted.ensureDeferred
async def test_primary_through_sentinel_follows_a_failover(redis_ha) -> None:
    """Through the Sentinels a role writes with WAIT 1, keeps an acknowledged write when the
    primary is SIGKILLed, and writes again after the promotion without a restart."""
    from twisted.internet import reactor

    login = RedisAddress(username=MASTER_USER, password=redis_ha.passwords[MASTER_USER])
    store = connect_sentinel(redis_ha.sentinel_addresses, SERVICE, login, reactor,
                             timeout=2.0, min_replica_acks=1)
    node = connect_sentinel(redis_ha.sentinel_addresses, SERVICE,
                            RedisAddress(username=NODE_USER,
                                         password=redis_ha.passwords[NODE_USER]),
                            reactor, timeout=2.0)
    try:
        assert await store.execute_durable("SET", "sfs:before", "kept") in (b"OK", "OK")
        assert await node.execute("PING") in (b"PONG", "PONG")
        primary = redis_ha.servers[0].process
        assert primary is not None
        os.kill(primary.pid, signal.SIGKILL)
        primary.wait(5)
        written, deadline = False, time.monotonic() + 20.0
        while not written and time.monotonic() < deadline:
            try:
                await store.execute_durable("SET", "sfs:after", "new")
                written = True
            except Exception:
                await _sleep(reactor, 0.2)
        assert written
        assert await store.execute("GET", "sfs:before") == b"kept"
        assert await node.execute("PING") in (b"PONG", "PONG")
    finally:
        await store.close()
        await node.close()


@pytest_twisted.ensureDeferred
async def test_wrong_login_behind_sentinel_is_said_once(redis_ha) -> None:
    """A role whose Redis password is wrong logs `redis_refused` once and its calls fail
    with RedisUnavailable within their deadline."""
    from twisted.internet import reactor
    from twisted.logger import capturedLogs

    from stretchfs.redisstore import RedisUnavailable

    with capturedLogs() as events:
        store = connect_sentinel(redis_ha.sentinel_addresses, SERVICE,
                                 RedisAddress(username=MASTER_USER, password="wrong"),
                                 reactor, timeout=1.0)
        try:
            with pytest.raises(RedisUnavailable):
                await store.execute("PING")
            await _sleep(reactor, 1.0)
        finally:
            await store.close()
    refused = [e for e in events if e.get("event") == "redis_refused"]
    assert len(refused) == 1 and "WRONGPASS" in refused[0]["why"]


def _sleep(reactor, seconds: float):
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


class _Connection:
    def __init__(self) -> None:
        from twisted.internet.testing import StringTransport

        self.transport = StringTransport()


class _ReadOnlyHandler:
    """A txredisapi handler whose every command meets a demoted primary."""

    def __init__(self) -> None:
        self._factory = type("Factory", (), {})()
        self._factory.pool = [_Connection(), _Connection()]

    def execute_command(self, *args):
        import txredisapi
        from twisted.internet.defer import fail

        return fail(txredisapi.ResponseError("READONLY You can't write against a read only "
                                             "replica."))


@pytest.mark.parametrize("follow", [True, False])
def test_readonly_reply_drops_connections_behind_sentinel(follow: bool) -> None:
    """A READONLY reply answers RedisUnavailable; behind Sentinel it also drops every pooled
    connection, so each reconnect asks the Sentinels for the new primary."""
    from stretchfs.redisstore import RedisUnavailable, TxRedisStore

    handler = _ReadOnlyHandler()
    store = TxRedisStore(handler, Clock(), 1.0, follow_failover=follow)
    d = store.execute("SET", "k", "v")
    assert d.result.check(RedisUnavailable)
    d.addErrback(lambda _: None)
    assert [c.transport.disconnecting for c in handler._factory.pool] == [follow, follow]


def _config_with(redis_ha, service: str):
    from stretchfs.config import parse_config
    from tests.helpers import minimal_config

    text = minimal_config("prism").replace(
        'url = "redis://127.0.0.1:1/0"',
        'url = "redis://127.0.0.1:1/0"\nsentinels = "{}"\nservice = "{}"'.format(
            ", ".join(redis_ha.sentinel_addresses), service))
    return parse_config("prism", text, "prism.toml", {})


def test_start_up_exits_78_for_an_unknown_service(redis_ha, capsys) -> None:
    """A role whose Sentinels know no such service stops at start with one line and 78."""
    from stretchfs.tapbase import check_sentinels

    with pytest.raises(SystemExit) as stopped:
        check_sentinels("prism", _config_with(redis_ha, "typo"))
    assert stopped.value.code == 78
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "knows no service 'typo'" in lines[0]
    check_sentinels("prism", _config_with(redis_ha, SERVICE))
    assert capsys.readouterr().err == ""


def test_a_pool_that_lost_track_of_a_dead_connection_is_unavailable() -> None:
    """txredisapi's ValueError while discarding a dead connection (during a failover)
    answers RedisUnavailable (a 503), not an internal error."""
    from twisted.internet.defer import fail

    from stretchfs.redisstore import RedisUnavailable, TxRedisStore

    handler = _ReadOnlyHandler()
    handler.execute_command = lambda *args: fail(ValueError("list.remove(x): x not in list"))
    d = TxRedisStore(handler, Clock(), 1.0, follow_failover=True).execute("PING")
    assert d.result.check(RedisUnavailable)
    d.addErrback(lambda _: None)
