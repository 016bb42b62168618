"""Feed long-polls: woken by a change at once, or answered empty after `wait` on the clock."""

from __future__ import annotations

import hashlib

import pytest_twisted
from twisted.internet.defer import ensureDeferred


def sha(n: int) -> str:
    """A deterministic content id."""
    return hashlib.sha1(str(n).encode()).hexdigest()


@pytest_twisted.ensureDeferred
async def test_long_poll_is_woken_by_a_publish(master) -> None:
    """A waiting inventory feed read answers as soon as a change is published."""
    waiting = ensureDeferred(master.call("GET", "/inventory/feed?after=0-0&wait=5"))
    await master.settled()
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
    await master.settled()
    master.clock.advance(2.9)
    await master.settled()
    assert not waiting.called
    master.clock.advance(0.2)
    reply = await waiting
    assert reply.json == {"cursor": "0-0", "changes": []}
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_long_poll_is_capped_by_feed_poll_timeout(master_factory) -> None:
    """A `wait` above `[master] feed_poll_timeout` waits only that long."""
    master = master_factory("feed_poll_timeout = 1.0\n")
    waiting = ensureDeferred(master.call("GET", "/inventory/feed?after=0-0&wait=60"))
    await master.settled()
    master.clock.advance(1.0)
    reply = await waiting
    assert reply.json["changes"] == []


@pytest_twisted.ensureDeferred
async def test_purchase_long_poll_is_woken_by_a_purchase(master) -> None:
    """A waiting purchase feed read answers as soon as a purchase is created."""
    waiting = ensureDeferred(master.call("GET", "/purchases/feed?after=0-0&wait=5"))
    await master.settled()
    created = (await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4"})).json
    reply = await waiting
    assert reply.json["changes"] == [{"op": "add", "purchase": created}]


@pytest_twisted.ensureDeferred
async def test_client_gone_while_waiting_frees_the_waiter(master) -> None:
    """A long-poll whose client disconnects leaves no waiter and no timer behind."""
    d = ensureDeferred(master.call("GET", "/inventory/feed?after=0-0&wait=5"))
    await master.settled()
    assert master.api.waiters.waiting("inventory") == 1
    d.cancel()
    d.addErrback(lambda _: None)
    await master.settled()
    assert master.api.waiters.waiting("inventory") == 0
    assert master.clock.getDelayedCalls() == []


def _following(after: str, wait: float = 0) -> str:
    return "/purchases/feed?after={}&wait={}&reader=prism2".format(after, wait)


@pytest_twisted.ensureDeferred
async def test_stopping_waits_until_a_follower_has_fetched_the_last_purchase(master) -> None:
    """A stopping master refuses new purchases but keeps serving the feed until a prism
    that was between polls has asked past the purchase acknowledged before the stop."""
    from stretchfs.master.api import DRAIN_CHECK_SECONDS

    first = (await master.call("GET", _following("0-0"))).json
    created = (await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4"})).json
    drained = ensureDeferred(master.api.drain())
    for _ in range(3):
        await master.settled()
        master.clock.advance(DRAIN_CHECK_SECONDS)
    assert not drained.called
    refused = await master.call("POST", "/purchases", {"hash": sha(2), "ext": "mp4"})
    assert refused.code == 503 and "shutting down" in refused.json["error"]
    page = (await master.call("GET", _following(first["cursor"]))).json
    assert page["changes"] == [{"op": "add", "purchase": created}]
    waiting = ensureDeferred(master.call("GET", _following(page["cursor"], wait=5)))
    await master.settled()
    master.clock.advance(DRAIN_CHECK_SECONDS)
    await drained
    master.clock.advance(5)
    assert (await waiting).json["changes"] == []
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_stopping_does_not_wait_for_a_follower_that_hung_up(master) -> None:
    """A prism whose feed read was cut (it stopped) is not waited for when the master stops."""
    read = ensureDeferred(master.call("GET", _following("0-0", wait=5)))
    await master.settled()
    assert master.api.followers.behind("purchases", "99-0") == ["prism2"]
    read.cancel()
    read.addErrback(lambda _: None)
    await master.settled()
    await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4"})
    drained = ensureDeferred(master.api.drain())
    await master.settled()
    assert drained.called
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_stopping_gives_up_on_a_silent_follower(master) -> None:
    """A follower that never asks again holds the stop back at most DRAIN_MAX_SECONDS."""
    from stretchfs.master.api import DRAIN_CHECK_SECONDS, DRAIN_MAX_SECONDS

    await master.call("GET", _following("0-0"))
    await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4"})
    drained = ensureDeferred(master.api.drain())
    waited = 0.0
    while not drained.called and waited <= DRAIN_MAX_SECONDS + 1:
        await master.settled()
        master.clock.advance(DRAIN_CHECK_SECONDS)
        waited += DRAIN_CHECK_SECONDS
    assert drained.called and waited >= DRAIN_MAX_SECONDS - DRAIN_CHECK_SECONDS
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_prism_client_names_itself_as_a_follower(master) -> None:
    """Feed reads of a MasterClient built with a reader name make that reader a follower."""
    client = master.client(reader="prism1")
    await client.purchase_feed("0-0", 0)
    await client.inventory_feed("0-0", 0)
    assert master.api.followers.behind("purchases", "99-0") == ["prism1"]
    assert master.api.followers.behind("inventory", "99-0") == ["prism1"]
