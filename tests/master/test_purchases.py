"""Purchase routes: create, lookup, remove, expiry, pruning, snapshot and feed."""

from __future__ import annotations

import hashlib
import json

import pytest_twisted

from stretchfs.master.lease import Lease
from stretchfs.master.purchases import PurchasePruner


def sha(n: int) -> str:
    """A deterministic content id."""
    return hashlib.sha1(str(n).encode()).hexdigest()


def ndjson(body: bytes) -> list:
    """Decoded NDJSON lines."""
    return [json.loads(line) for line in body.splitlines() if line]


async def buy(master, n: int = 1, life: float = 100, owner: str = "alice", **extra) -> dict:
    """Create a purchase of content `n` for `owner`."""
    reply = await master.call("POST", "/purchases", dict(hash=sha(n), ext="mp4", life=life,
                                                          owner=owner, **extra))
    assert reply.code == 201, reply.body
    return reply.json


@pytest_twisted.ensureDeferred
async def test_create_draws_token_and_expiry(master) -> None:
    """The master draws a 64-alphanumeric token and sets expires = now + life."""
    purchase = await buy(master, life=60, referrer=["example.com"], ip="1.2.3.4")
    assert len(purchase["token"]) == 64 and purchase["token"].isalnum()
    assert purchase["expires"] == master.clock.seconds() + 60
    assert purchase["referrer"] == ["example.com"] and purchase["ip"] == "1.2.3.4"
    fetched = await master.call("GET", "/purchases/" + purchase["token"])
    assert fetched.json == purchase
    other = await buy(master)
    assert other["token"] != purchase["token"]


@pytest_twisted.ensureDeferred
async def test_expired_purchase_is_404_before_pruning(master) -> None:
    """Once `expires` has passed on the clock, lookups answer 404 even though it is not pruned."""
    purchase = await buy(master, life=10)
    master.clock.advance(9.9)
    assert (await master.call("GET", "/purchases/" + purchase["token"])).code == 200
    master.clock.advance(0.1)
    reply = await master.call("GET", "/purchases/" + purchase["token"])
    assert reply.code == 404 and reply.json["error"]
    assert await master.client().get_purchase(purchase["token"]) is None


@pytest_twisted.ensureDeferred
async def test_remove_counts_and_is_fed(master) -> None:
    """Removing answers count 1 then 0, and the removal is on the feed."""
    purchase = await buy(master)
    token = purchase["token"]
    assert (await master.call("POST", "/purchases/{}/remove".format(token))).json == {
        "token": token, "count": 1}
    assert (await master.call("POST", "/purchases/{}/remove".format(token))).json == {
        "token": token, "count": 0}
    assert (await master.call("GET", "/purchases/" + token)).code == 404
    feed = (await master.call("GET", "/purchases/feed?after=0-0")).json
    assert feed["changes"] == [{"op": "add", "purchase": purchase},
                               {"op": "remove", "token": token}]


@pytest_twisted.ensureDeferred
async def test_prune_route_removes_only_expired_and_feeds_them(master) -> None:
    """POST /purchases/prune removes the expired purchases, each announced on the feed."""
    short = [await buy(master, n, life=10) for n in range(3)]
    long = await buy(master, 9, life=1000)
    cursor = (await master.call("GET", "/purchases/feed?after=0-0")).json["cursor"]
    master.clock.advance(11)
    assert (await master.call("POST", "/purchases/prune")).json == {"pruned": 3}
    assert (await master.call("POST", "/purchases/prune")).json == {"pruned": 0}
    feed = (await master.call("GET", "/purchases/feed?after=" + cursor)).json
    assert sorted(c["token"] for c in feed["changes"]) == sorted(p["token"] for p in short)
    assert all(c["op"] == "remove" for c in feed["changes"])
    assert (await master.call("GET", "/purchases/" + long["token"])).code == 200
    assert await master.client().prune_purchases() == {"pruned": 0}


def _pruner(master, owner: str, counts: list, held: list, interval: float = 3600.0,
            ttl: float = 15.0) -> PurchasePruner:
    """A pruner bidding for the master's prune lease as `owner`."""
    lease = Lease(master.redis, master.api.keys.prune_lease, owner, ttl, master.clock)
    return PurchasePruner(master.api.purchases, lease, master.clock, interval,
                          on_hold=held.append, on_pruned=counts.append)


@pytest_twisted.ensureDeferred
async def test_pruner_runs_on_the_clock(master) -> None:
    """The pruning job runs at start and then every interval of the injected clock."""
    counts: list = []
    pruner = _pruner(master, "m1", counts, [])
    pruner.startService()
    await master.settled()
    assert counts == [0]
    await buy(master, 1, life=10)
    await buy(master, 2, life=7200)
    master.clock.advance(3595)
    await master.settled()
    assert len(counts) == 1
    master.clock.advance(5)
    await master.settled()
    assert counts == [0, 1]
    assert len(ndjson((await master.call("GET", "/purchases/snapshot")).body)) == 2
    pruner.stopService()
    assert master.clock.getDelayedCalls() == []


async def _advance(master, seconds: float, step: float = 1.0) -> None:
    """Move the clock `seconds` in steps, letting every bid reach Redis."""
    for _ in range(int(seconds / step)):
        master.clock.advance(step)
        await master.settled()


@pytest_twisted.ensureDeferred
async def test_one_master_prunes_and_another_takes_over_after_it_died(master) -> None:
    """Of two masters only the lease holder prunes; once it stops renewing, the other holds
    the lease within 4/3 of the TTL and prunes when the interval since the last run passed."""
    first_counts: list = []
    second_counts: list = []
    first_held: list = []
    second_held: list = []
    first = _pruner(master, "m1", first_counts, first_held, interval=60.0, ttl=6.0)
    second = _pruner(master, "m2", second_counts, second_held, interval=60.0, ttl=6.0)
    first.startService()
    await master.settled()
    second.startService()
    await master.settled()
    assert first.held and not second.held and first_counts == [0]
    await buy(master, 1, life=10)
    await _advance(master, 60)
    assert first_counts == [0, 1] and second_counts == [] and not second.held
    first.stopService()                 # dies: stops renewing, keeps the lease until it expires
    died = master.clock.seconds()
    while not second.held and master.clock.seconds() - died < 20:
        await _advance(master, 1)
    assert 4 <= master.clock.seconds() - died <= 8      # 2/3 of the TTL .. 4/3 of it
    assert second_held[-1] is True and second_counts == []   # the last run is recent
    await buy(master, 2, life=10)
    await _advance(master, 60 - (master.clock.seconds() - died))
    assert second_counts == [1] and first_counts == [0, 1]
    second.stopService()
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_cleanly_stopped_holder_hands_the_lease_over_at_the_next_bid(master) -> None:
    """A pruner that releases its lease (its master stops) stops bidding, and the other
    master holds the lease at its next bid, not after the TTL."""
    first = _pruner(master, "m1", [], [], ttl=6.0)
    second = _pruner(master, "m2", [], [], ttl=6.0)
    first.startService()
    await master.settled()
    second.startService()
    await master.settled()
    assert first.held and not second.held
    await first.release()
    assert not first.held
    await _advance(master, 2)                          # one bid period (ttl / 3)
    assert second.held and not first.held
    first.stopService()
    second.stopService()
    assert master.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_holder_that_lost_its_lease_prunes_nothing_more(master) -> None:
    """A prune whose lease another master took meanwhile stops before its next batch."""
    key = master.api.keys.prune_lease
    stale = Lease(master.redis, key, "m1", 6.0, master.clock)
    assert await stale.hold()
    await buy(master, 1, life=1)
    master.clock.advance(7)
    assert await Lease(master.redis, key, "m2", 6.0, master.clock).hold()
    assert await master.api.purchases.prune(go_on=stale.keep) == 0
    assert await master.api.purchases.count() == 1
    assert await master.api.purchases.prune() == 1


@pytest_twisted.ensureDeferred
async def test_snapshot_lists_unexpired_purchases_after_the_cursor(master) -> None:
    """The purchase snapshot has the cursor line, then only unexpired purchases."""
    expired = await buy(master, 1, life=5)
    live = [await master.api.purchases.create({"hash": sha(n), "ext": "mp4", "life": 500})
            for n in range(2, 1300)]
    master.clock.advance(6)
    lines = ndjson((await master.call("GET", "/purchases/snapshot")).body)
    feed = (await master.call("GET", "/purchases/feed?after=0-0&limit=1")).json
    assert lines[0]["cursor"] >= feed["cursor"]
    tokens = {p["token"] for p in lines[1:]}
    assert tokens == {p["token"] for p in live}
    assert expired["token"] not in tokens
    rows: list = []
    cursor = await master.client().purchase_snapshot(rows.append)
    assert cursor == lines[0]["cursor"] and len(rows) == len(live)


@pytest_twisted.ensureDeferred
async def test_bad_purchase_input_is_400(master) -> None:
    """Malformed purchase bodies and tokens answer 400 and create nothing."""
    for body in ({"ext": "mp4"}, {"hash": "zz", "ext": "mp4"}, {"hash": sha(1)},
                 {"hash": sha(1), "ext": "mp4", "life": 0},
                 {"hash": sha(1), "ext": "mp4", "life": "long"},
                 {"hash": sha(1), "ext": "mp4", "referrer": [1]},
                 {"hash": sha(1), "ext": "mp4", "ip": 5}):
        reply = await master.call("POST", "/purchases", body)
        assert reply.code == 400, body
    assert (await master.call("GET", "/purchases/short")).code == 400
    assert (await master.call("POST", "/purchases/{}/remove".format("x" * 63))).code == 400
    assert (await master.call("GET", "/purchases/" + "A" * 64)).code == 404
    assert (await master.call("GET", "/purchases/feed?after=0-0")).json["changes"] == []


@pytest_twisted.ensureDeferred
async def test_purchase_accepts_sha1_and_default_life(master) -> None:
    """`sha1` is accepted for `hash`, and life defaults to 7200 seconds."""
    reply = await master.call("POST", "/purchases", {"sha1": sha(5), "ext": "jpg"})
    assert reply.code == 201
    assert reply.json["hash"] == sha(5) and reply.json["life"] == 7200


@pytest_twisted.ensureDeferred
async def test_client_creates_and_removes(master) -> None:
    """MasterClient wraps create, get, remove and the feed."""
    client = master.client()
    purchase = await client.create_purchase({"hash": sha(1), "ext": "mp4", "life": 30})
    assert (await client.get_purchase(purchase["token"]))["hash"] == sha(1)
    assert (await client.remove_purchase(purchase["token"]))["count"] == 1
    page = await client.purchase_feed("0-0", wait=0)
    assert [c["op"] for c in page["changes"]] == ["add", "remove"]


def test_pruner_retries_soon_after_redis_fails(clock) -> None:
    """A prune that fails because Redis is away is retried at the next lease bid (a third
    of the TTL), not a whole interval later, and the master does not count as holder."""
    from stretchfs.master.keys import Keys
    from stretchfs.master.purchases import Purchases
    from tests.fakes import FakeRedisStore

    redis = FakeRedisStore(clock)
    redis.down = True
    counts: list = []
    held: list = []
    purchases = Purchases(redis, Keys("t:"), clock, 100, 86400.0, feed_page_max_bytes=1000)
    lease = Lease(redis, Keys("t:").prune_lease, "m1", 15.0, clock)
    pruner = PurchasePruner(purchases, lease, clock, 86400.0, on_hold=held.append,
                            on_pruned=counts.append)
    pruner.startService()
    assert counts == [] and held == [False]
    assert [call.getTime() - clock.seconds() for call in clock.getDelayedCalls()] == [5.0]
    pruner.stopService()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_purchase_snapshot_plus_feed_equals_final_state_under_concurrent_writes(
        master) -> None:
    """Purchase snapshot + feed from its cursor gives the final set while writes run."""
    from twisted.internet.defer import ensureDeferred, gatherResults

    client = master.client()
    existing = [await master.api.purchases.create({"hash": sha(n), "ext": "mp4", "life": 500})
                for n in range(1200)]

    async def writer() -> None:
        for n in range(40):
            await client.create_purchase({"hash": sha(n), "ext": "jpg", "life": 500})
            await client.remove_purchase(existing[n * 25]["token"])

    seen: set = set()
    results = await gatherResults([
        ensureDeferred(client.purchase_snapshot(lambda row: seen.add(row["token"]))),
        ensureDeferred(writer())])
    cursor = results[0]
    for _ in range(100):
        page = await client.purchase_feed(cursor, wait=0, limit=37)
        for change in page["changes"]:
            if change["op"] == "add":
                seen.add(change["purchase"]["token"])
            else:
                seen.discard(change["token"])
        if not page["changes"]:
            break
        cursor = page["cursor"]
    final: list = []
    await client.purchase_snapshot(final.append)
    assert seen == {row["token"] for row in final}
    assert len(seen) == 1200


@pytest_twisted.ensureDeferred
async def test_feed_pages_of_large_purchases_stay_readable(master_factory) -> None:
    """Many large purchases (long referrer lists) come in pages capped by bytes, each
    continuing where the last stopped, so a reader's reply cap is never hit."""
    master = master_factory(feed_page_max_bytes=20_000)
    referrers = ["r{}.example.com/{}".format(n, "p" * 200) for n in range(20)]
    tokens = [(await buy(master, n, referrer=referrers))["token"] for n in range(12)]
    cursor, seen, pages = "0-0", [], 0
    for _ in range(20):
        page = (await master.call("GET", "/purchases/feed?after={}&limit=1000".format(
            cursor))).json
        if not page["changes"]:
            break
        pages += 1
        assert len(json.dumps(page)) < 20_000 + 10_000
        seen += [change["purchase"]["token"] for change in page["changes"]]
        cursor = page["cursor"]
    assert seen == tokens
    assert pages > 1


@pytest_twisted.ensureDeferred
async def test_oversized_referrer_lists_and_deep_json_are_400(master) -> None:
    """A referrer list past 16 KiB of JSON, or JSON nested past Python's recursion limit,
    is a clear 400 and creates nothing."""
    big = await master.call("POST", "/purchases", {
        "hash": sha(1), "ext": "mp4", "referrer": ["\U0001F600" * 2000] * 10})
    assert big.code == 400 and "referrer" in big.json["error"]
    deep = await master.call("POST", "/purchases", raw=b"[" * 100_000 + b"]" * 100_000)
    assert deep.code == 400
    assert (await master.call("GET", "/purchases/feed?after=0-0")).json["changes"] == []


SESSION = "S" * 64


@pytest_twisted.ensureDeferred
async def test_purchase_keeps_its_owner_and_never_a_session_token(master) -> None:
    """A purchase stores its buyer's user name; a session token sent along is never kept."""
    purchase = await buy(master, owner="alice", session=SESSION)
    assert purchase["owner"] == "alice"
    fetched = await master.call("GET", "/purchases/" + purchase["token"])
    snapshot = await master.call("GET", "/purchases/snapshot")
    feed = await master.call("GET", "/purchases/feed?after=0-0")
    for body in (json.dumps(purchase).encode(), fetched.body, snapshot.body, feed.body):
        assert SESSION.encode() not in body and b'"session"' not in body
    assert (await master.call("POST", "/purchases", {"hash": sha(1), "ext": "mp4",
                                                     "owner": "no one"})).code == 400


@pytest_twisted.ensureDeferred
async def test_lookup_for_another_owner_answers_as_an_unknown_token(master) -> None:
    """GET /purchases/<token>?owner= answers 404 for another owner exactly as for no purchase."""
    token = (await buy(master, owner="alice"))["token"]
    mine = await master.call("GET", "/purchases/{}?owner=alice".format(token))
    theirs = await master.call("GET", "/purchases/{}?owner=bob".format(token))
    unknown = await master.call("GET", "/purchases/{}?owner=bob".format("U" * 64))
    assert mine.code == 200 and mine.json["token"] == token
    assert (theirs.code, theirs.body) == (unknown.code, unknown.body) == (
        404, b'{"error":"purchase not found"}')
    assert await master.client().get_purchase(token, owner="bob") is None
    assert (await master.client().get_purchase(token, owner="alice"))["token"] == token


@pytest_twisted.ensureDeferred
async def test_remove_for_another_owner_counts_zero_and_keeps_the_purchase(master) -> None:
    """Removing another owner's purchase answers as for an unknown token and changes nothing."""
    token = (await buy(master, owner="alice"))["token"]
    cursor = (await master.call("GET", "/purchases/feed?after=0-0")).json["cursor"]
    theirs = await master.call("POST", "/purchases/{}/remove".format(token), {"owner": "bob"})
    assert theirs.json == {"token": token, "count": 0}
    assert (await master.call("GET", "/purchases/" + token)).code == 200
    assert (await master.call("GET", "/purchases/feed?after=" + cursor)).json["changes"] == []
    assert (await master.client().remove_purchase(token, owner="alice"))["count"] == 1
    assert (await master.call("GET", "/purchases/" + token)).code == 404


@pytest_twisted.ensureDeferred
async def test_purchases_stored_before_owners_belong_to_nobody(master) -> None:
    """A record from before owners (with the buyer's session token) still delivers by token,
    is nobody's to read or remove, and its session token is never answered."""
    keys = master.api.keys
    token = "L" * 64
    expires = master.clock.seconds() + 100
    legacy = {"token": token, "hash": sha(1), "ext": "mp4", "life": 100, "expires": expires,
              "referrer": [], "ip": "", "session": SESSION, "created": 0}
    encoded = json.dumps(legacy)
    await master.redis.execute("SET", keys.purchase(token), encoded)
    await master.redis.execute("ZADD", keys.purchase_expiry, expires, token)
    await master.redis.execute("XADD", keys.purchase_feed, "*", "c", "a|" + encoded)
    plain = await master.call("GET", "/purchases/" + token)
    assert plain.code == 200 and plain.json["hash"] == sha(1)
    snapshot = await master.call("GET", "/purchases/snapshot")
    feed = await master.call("GET", "/purchases/feed?after=0-0")
    assert [line.get("token") for line in ndjson(snapshot.body)[1:]] == [token]
    assert feed.json["changes"][0]["purchase"]["token"] == token
    for body in (plain.body, snapshot.body, feed.body):
        assert SESSION.encode() not in body
    assert (await master.call("GET", "/purchases/{}?owner=alice".format(token))).code == 404
    removed = await master.call("POST", "/purchases/{}/remove".format(token), {"owner": ""})
    assert removed.code == 400
    removed = await master.call("POST", "/purchases/{}/remove".format(token), {"owner": "alice"})
    assert removed.json["count"] == 0
    assert (await master.call("GET", "/purchases/" + token)).code == 200
