"""Writes that must survive the Redis primary's death wait for replicas (Redis WAIT):
on the lone test Redis, which has none, min_replica_acks=1 makes them answer 503."""

from __future__ import annotations

import hashlib

import pytest_twisted

LONE_REDIS_TIMEOUT = 0.4  # WAIT gives up after half of it


def _purchase() -> dict:
    return {"hash": hashlib.sha1(b"1").hexdigest(), "ext": "mp4", "life": 100,
            "owner": "alice"}


def _publish() -> dict:
    return {"store": "store1", "changes": [{"op": "add", "hash": hashlib.sha1(b"1").hexdigest(),
                                            "ext": "mp4", "size": 100}]}


@pytest_twisted.ensureDeferred
async def test_unreplicated_writes_answer_503(master_factory) -> None:
    """User creation, purchases and inventory publishes that no replica confirmed answer
    503 (the client retries), with the reason in the body."""
    master = master_factory(replica_acks=1, redis_timeout=LONE_REDIS_TIMEOUT)
    for path, body in (("/users", {"username": "alice"}), ("/purchases", _purchase()),
                       ("/inventory/publish", _publish())):
        reply = await master.call("POST", path, body)
        assert reply.code == 503, (path, reply.body)
        assert b"replicas confirmed the write" in reply.body


@pytest_twisted.ensureDeferred
async def test_a_retried_user_creation_finds_it_applied(master_factory) -> None:
    """The refused user creation had reached the primary: a retry answers 409 and the
    user exists (docs/ha.md says so)."""
    durable = master_factory(replica_acks=1, redis_timeout=LONE_REDIS_TIMEOUT)
    assert (await durable.call("POST", "/users", {"username": "bob"})).code == 503
    plain = master_factory()
    assert (await plain.call("POST", "/users", {"username": "bob"})).code == 409


@pytest_twisted.ensureDeferred
async def test_without_replica_acks_the_same_writes_succeed(master_factory) -> None:
    """With min_replica_acks=0 (one Redis, no replicas) the same writes are acknowledged."""
    master = master_factory(redis_timeout=LONE_REDIS_TIMEOUT)
    assert (await master.call("POST", "/users", {"username": "alice"})).code == 201
    assert (await master.call("POST", "/purchases", _purchase())).code == 201
    assert (await master.call("POST", "/inventory/publish", _publish())).code == 200
