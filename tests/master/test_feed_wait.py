"""Feed long-polls: woken by a change at once, or answered empty after `wait` on the clock."""

from __future__ import annotations

import hashlib

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from tests.helpers import CLUSTER_KEY


def sha(n: int) -> str:
    """A deterministic content id."""
    return hashlib.sha1(str(n).encode()).hexdigest()


async def _settle(rounds: int = 20) -> None:
    """Let the real reactor run pending I/O for a moment."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(rounds):
        await deferLater(reactor, 0.005, lambda: None)


@pytest_twisted.ensureDeferred
async def test_long_poll_is_woken_by_a_publish(master) -> None:
    """A waiting inventory feed read answers as soon as a change is published."""
    waiting = ensureDeferred(master.call("GET", "/inventory/feed?after=0-0&wait=5"))
    await _settle()
    assert not waiting.called
    assert master.api.waiters.waiting("inventory") == 1
    await master.call("POST", "/inventory/publish", {"store": "s1", "changes": [
        {"op": "add", "hash": sha(1), "ext": "jpg", "size": 3}]})
    reply = await waiting
    assert reply.code == 200
    assert [c["hash"] for c in reply.json["changes"]] == [sha(1)]
    assert master.api.waiters.waiting("inventory") == 0


@pytest_twisted.ensureDeferred
async def test_long_poll_times_out_on_the_clock(master) -> None:
    """With nothing new, a feed read answers no changes once `wait` has passed on the clock."""
    waiting = ensureDeferred(master.call("GET", "/purchases/feed?after=0-0&wait=3"))
    await _settle()
    master.clock.advance(2.9)
    await _settle()
    assert not waiting.called
    master.clock.advance(0.2)
    reply = await waiting
    assert reply.json == {"cursor": "0-0", "changes": []}
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_long_poll_is_capped_by_feed_poll_timeout(master_factory) -> None:
    """A `wait` above `[master] feed_poll_timeout` waits only that long."""
    master = await master_factory("feed_poll_timeout = 1.0\n")
    waiting = ensureDeferred(master.call("GET", "/inventory/feed?after=0-0&wait=60"))
    await _settle()
    master.clock.advance(1.0)
    reply = await waiting
    assert reply.json["changes"] == []


@pytest_twisted.ensureDeferred
async def test_purchase_long_poll_is_woken_by_a_purchase(master) -> None:
    """A waiting purchase feed read answers as soon as a purchase is created."""
    waiting = ensureDeferred(master.call("GET", "/purchases/feed?after=0-0&wait=5"))
    await _settle()
    created = (await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4"})).json
    reply = await waiting
    assert reply.json["changes"] == [{"op": "add", "purchase": created}]


@pytest_twisted.ensureDeferred
async def test_client_gone_while_waiting_frees_the_waiter(master) -> None:
    """A long-poll whose client disconnects leaves no waiter and no timer behind."""
    import treq
    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    http = treq.client.HTTPClient(Agent(reactor, pool=pool))
    d = http.get(master.base + "/inventory/feed?after=0-0&wait=5",
                 headers={b"Authorization": [b"Bearer " + CLUSTER_KEY.encode()]})
    await _settle()
    assert master.api.waiters.waiting("inventory") == 1
    d.cancel()
    d.addErrback(lambda _: None)
    await _settle()
    assert master.api.waiters.waiting("inventory") == 0
    assert master.clock.getDelayedCalls() == []
