"""Re-replication: copies that count, the planner's lease, queue and copies (docs/repair.md).

The planner runs over the real Redis the master suite uses, on a `task.Clock`,
with stand-in stores whose fetch publishes the new copy as a store would.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from collections import Counter
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from stretchfs.cli.repair import show_status
from stretchfs.config import RepairSettings
from stretchfs.errors import UpstreamError
from stretchfs.master.cliconn import run_command
from stretchfs.master.inventory import parse_changes
from stretchfs.master.lease import Lease
from stretchfs.master.metrics import RepairMetrics
from stretchfs.master.planner import ROWS_FRESH_SECONDS, RepairPlanner
from stretchfs.master.repair import (
    DOWN,
    LOST,
    ByteBudget,
    StoreState,
    next_state,
    pick_source,
    pick_target,
)
from stretchfs.metrics import new_registry
from stretchfs.pingnet.keys import votes_key

LOST_AFTER = 30.0
# store1..store4 on their own hosts; zones a, b, c, a (as `stretchfs dev up`)
ZONES = {"store1": "a", "store2": "b", "store3": "c", "store4": "a"}


def state(name: str, host: str = "", zone: str = "a", state: str = "up", *,
          active: bool = True, writable: bool = True, free: int | None = None) -> StoreState:
    """A StoreState for the pure rules."""
    return StoreState(name=name, host=host or name, url="http://" + name, zone=("s", zone),
                      active=active, writable=writable, state=state, free=free)


def test_a_store_is_down_then_lost_after_lost_after_and_up_when_votes_clear() -> None:
    """Down at the first vote, lost `lost_after` seconds later, up again once votes clear."""
    first = next_state(None, True, 100.0, LOST_AFTER)
    assert first == {"state": DOWN, "since": 100.0}
    assert next_state(first, True, 129.0, LOST_AFTER) == {"state": DOWN, "since": 100.0}
    lost = next_state(first, True, 130.0, LOST_AFTER)
    assert lost == {"state": LOST, "since": 100.0}
    assert next_state(lost, False, 131.0, LOST_AFTER) is None


def test_copies_on_down_stores_count_but_do_not_serve() -> None:
    """A down store's copy counts (expected back) but cannot be a source; a lost or
    inactive one neither counts nor serves."""
    down, lost = state("d", state=DOWN), state("l", state=LOST)
    inactive = state("i", active=False)
    assert down.counts and not down.serves
    assert not lost.counts and not lost.serves
    assert not inactive.counts and not inactive.serves
    stores = {s.name: s for s in (down, lost, inactive, state("u"))}
    assert pick_source(["d", "l", "i"], stores, {}, 2) is None
    assert pick_source(["d", "l", "u"], stores, {}, 2) == "u"


def test_target_follows_the_upload_placement_rules() -> None:
    """A target is never on a host with a counted copy, prefers a new zone, then free
    space, and must be up, writable, have room and a free slot."""
    stores = {s.name: s for s in (
        state("h1", host="hostA", zone="a"),
        state("same-host", host="hostA", zone="b"),
        state("same-zone", host="hostC", zone="a", free=10**9),
        state("new-zone-small", host="hostD", zone="b", free=10**6),
        state("new-zone-big", host="hostE", zone="c", free=10**8),
        state("full", host="hostF", zone="d", free=10),
        state("read-only", host="hostG", zone="e", writable=False),
        state("down", host="hostH", zone="f", state=DOWN),
    )}
    assert pick_target(["h1"], stores, 1000, {}, 2) == "new-zone-big"
    assert pick_target(["h1"], stores, 1000, {"new-zone-big": 2}, 2) == "new-zone-small"
    assert pick_target(["h1"], stores, 1000, {}, 2, avoid={"new-zone-big"}) == "new-zone-small"
    busy = {"new-zone-big": 2, "new-zone-small": 2}
    assert pick_target(["h1"], stores, 1000, busy, 2) == "same-zone"
    busy["same-zone"] = 2
    assert pick_target(["h1"], stores, 1000, busy, 2) is None


def test_the_byte_budget_lets_a_store_rest_after_a_copy() -> None:
    """A store may start a copy while it spent less than one second's worth; what it
    spent drains at the rate; without a rate nothing is limited."""
    budget = ByteBudget(100)
    assert budget.allows("s1", 0.0)
    budget.spend("s1", 150, 0.0)
    assert not budget.allows("s1", 0.0) and not budget.allows("s1", 0.4)
    assert budget.allows("s1", 0.6) and budget.allows("s2", 0.0)
    unlimited = ByteBudget(0)
    unlimited.spend("s1", 10**12, 0.0)
    assert unlimited.allows("s1", 0.0)


@pytest_twisted.ensureDeferred
async def test_one_lease_holder_at_a_time_and_a_stale_holder_is_fenced(master) -> None:
    """Two masters bid: one holds; after it stops renewing past the TTL the other takes
    over with a larger token, and the old holder's writes are refused."""
    key = master.api.keys.repair_lease
    first = Lease(master.redis, key, "m1", 10.0, master.clock)
    second = Lease(master.redis, key, "m2", 10.0, master.clock)
    token = await first.hold()
    assert token > 0 and first.valid()
    assert await second.hold() == 0 and not second.valid()
    master.clock.advance(3)
    assert await first.keep()          # under a third of the TTL: nothing to renew yet
    master.clock.advance(2)
    assert await first.keep()          # renewed: expires 10 s from now
    assert await second.hold() == 0
    master.clock.advance(8.5)          # 8.5 s after the renewal: past 80 % of the TTL
    assert not first.valid()
    assert await second.hold() == 0    # still first's by Redis (expires 10 s after renewal)
    master.clock.advance(2)
    newer = await second.hold()
    assert newer > token and second.valid()
    queue = master.api.keys.repair_queue
    assert not await first.keep()
    assert not await first.fenced([["ZADD", queue, 1, "a" * 40]])
    assert first.token == 0 and not first.valid()
    assert await second.fenced([["ZADD", queue, 1, "b" * 40]])
    assert await master.redis.execute("ZRANGEBYSCORE", queue, "-inf", "+inf") == [b"b" * 40]


class StandInStores:
    """Stores as the planner sees them: `fetch` and `fetch_batch` record each content
    copied (`calls`) and publish the copies to the inventory as the target would (or fail,
    or wait while `hold` is set, or answer `corrupt` for a source in `corrupt`)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.calls: list[tuple[str, str, str]] = []
        self.failing: set[str] = set()
        self.hold = False
        self.waiting: list[Deferred[dict[str, Any]]] = []
        self.requests: list[tuple[str, str, list[str]]] = []   # batches: source, target
        self.timeouts: list[float] = []
        self.corrupt: set[str] = set()     # sources whose bytes do not match

    def client(self, url: str) -> "StandInStores._Client":
        """The client of the store at `url` (http://<name>.test:8200)."""
        return StandInStores._Client(self, url.split("//")[1].split(".")[0])

    class _Client:
        def __init__(self, stores: "StandInStores", name: str) -> None:
            self.stores = stores
            self.name = name

        def _refused_or_held(self) -> Deferred[Any] | None:
            """A 507 from a store in `failing`; a copy left waiting while `hold`."""
            if self.name in self.stores.failing:
                raise UpstreamError(507, b'{"error": "full"}', "fetch")
            if not self.stores.hold:
                return None
            waiter: Deferred[dict[str, Any]] = Deferred()
            self.stores.waiting.append(waiter)
            return waiter

        def fetch(self, sha1: str, ext: str, source: str, timeout: float) -> Deferred[Any]:
            stores = self.stores
            stores.calls.append((sha1, source, self.name))
            held = self._refused_or_held()
            if held is not None:
                return held
            row = {"op": "add", "hash": sha1, "ext": ext, "size": 10}
            published = Deferred.fromCoroutine(
                stores.api.inventory.publish(self.name, parse_changes([row])))
            return published.addCallback(lambda _: {"hash": sha1, "existed": False})

        def fetch_batch(self, source: str, items: list[dict[str, Any]],
                        timeout: float) -> Deferred[Any]:
            stores = self.stores
            stores.requests.append((source, self.name, [item["hash"] for item in items]))
            stores.timeouts.append(timeout)
            stores.calls += [(item["hash"], source, self.name) for item in items]
            held = self._refused_or_held()
            if held is not None:
                return held
            copied = [item for item in items if source not in stores.corrupt]
            rows = [{"op": "add", "hash": item["hash"], "ext": item["ext"], "size": 10}
                    for item in copied]
            answer = {"items": {item["hash"]: {"status": "copied" if item in copied
                                               else "corrupt"} for item in items}}
            published = Deferred.fromCoroutine(
                stores.api.inventory.publish(self.name, parse_changes(rows)))
            return published.addCallback(lambda _: answer)


async def cluster(master: Any, hashes: int = 6) -> list[str]:
    """Four registered stores; `hashes` contents, each on store4 and one other store."""
    for index, (name, zone) in enumerate(sorted(ZONES.items())):
        await master.api.peers.register({
            "name": name, "role": "store", "host": "127.0.0.{}".format(index + 2),
            "port": "8200", "ping_port": "8300", "site": "s", "zone": zone,
            "url": "http://{}.test:8200".format(name)})
    made = []
    for n in range(hashes):
        sha1 = hashlib.sha1(str(n).encode()).hexdigest()
        made.append(sha1)
        for holder in ("store4", "store{}".format(1 + n % 3)):
            await master.api.inventory.publish(holder, parse_changes(
                [{"op": "add", "hash": sha1, "ext": "bin", "size": 10}]))
    return made


async def vote_down(master: Any, target: str) -> None:
    """The three other stores vote `target` down (a ping-net majority)."""
    until = master.clock.seconds() + 10**6
    for voter in sorted(set(ZONES) - {target}):
        await master.redis.execute("ZADD", votes_key(master.api.keys.prefix, target), until,
                                   voter)


class CountingRedis:
    """The master's Redis, noting the rows each HMGET reads and each read of the queue's
    head."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.read: list[str] = []
        self.heads = 0

    def execute(self, *args: Any) -> Deferred[Any]:
        """Run one command."""
        if args[0] == "HMGET":
            self.read += [str(arg) for arg in args[2:]]
        return self.redis.execute(*args)

    def pipeline(self, commands: Any) -> Deferred[list[Any]]:
        """Run commands in one round trip."""
        self.heads += sum(1 for command in commands if command[0] == "ZRANGEBYSCORE"
                          and str(command[1]).endswith("repair:queue"))
        return self.redis.pipeline(commands)

    def execute_durable(self, *args: Any) -> Deferred[Any]:
        """Run one command that must reach the replicas."""
        return self.redis.execute_durable(*args)


def planner(master: Any, stores: StandInStores, owner: str = "m1", redis: Any = None,
            **settings: Any) -> RepairPlanner:
    """A planner over the master's Redis (or `redis`) and the stand-in stores."""
    values = dict(lost_after=LOST_AFTER, interval=1.0, per_store=2, lease_ttl=10.0)
    values.update(settings)
    return RepairPlanner(redis=redis or master.redis, keys=master.api.keys,
                         settings=RepairSettings(**values), replicas=2, clock=master.clock,
                         owner=owner, list_peers=master.api.peers.list, disks=dict,
                         store_client=stores.client, metrics=RepairMetrics(new_registry(False)),
                         inventory=master.api.inventory)


async def rounds(job: RepairPlanner, master: Any, count: int, step: float = 1.0) -> None:
    """Run `count` planner rounds `step` seconds apart, each waiting for its copies."""
    for _ in range(count):
        await job.run_round()
        await job.copies_done()
        master.clock.advance(step)


async def counted_rows(master: Any, hashes: list[str]) -> dict[str, list[str]]:
    """The inventory's holders of each hash."""
    rows = await master.api.inventory.lookup_many(hashes)
    return {h: sorted(rows[h]["stores"]) for h in hashes}


@pytest_twisted.ensureDeferred
async def test_a_lost_stores_copies_are_made_again_on_other_hosts(master) -> None:
    """Nothing is copied while the store is only down; once lost, every hash it held gets a
    second counted copy on a host that had none, one log line per batch, and the status
    and metrics say so."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    job = planner(master, stores)
    await vote_down(master, "store4")
    with capturedLogs() as events:
        await rounds(job, master, 3)
        assert stores.calls == []
        master.clock.advance(LOST_AFTER)
        await rounds(job, master, 1)
        # scanned as store4 was lost: every hash had one counted copy
        assert job.metrics.hashes.labels(copies="1")._value.get() == len(hashes)
        await rounds(job, master, 3)
    assert len(stores.calls) == len(hashes)
    rows = await counted_rows(master, hashes)
    for sha1, source, target in stores.calls:
        assert source != "store4" and target != "store4"
        assert rows[sha1] == sorted({"store4", source, target})
    states = [e.get("state") for e in events if e.get("event") == "repair_store"]
    assert states == [DOWN, LOST]
    batches = [e for e in events if e.get("event") == "repair_batch"]
    assert 1 <= len(batches) <= 3 and batches[-1]["queued"] == 0
    assert sum(e["started"] for e in batches) == sum(e["copied"] for e in batches) == len(hashes)
    status = (await master.call("GET", "/repair/status")).json
    assert status["queue"] == 0 and status["repaired"]["copies"] == len(hashes)
    assert status["repaired"]["bytes"] == 10 * len(hashes)
    assert status["stores"]["store4"]["state"] == LOST
    assert status["planner"]["owner"] == "m1" and status["planner"]["live"]
    # scanned again once the queue ran empty
    assert status["copies"] == {"0": 0, "1": 0, "2+": len(hashes)}
    assert job.metrics.hashes.labels(copies="1")._value.get() == 0
    assert job.metrics.copies._value.get() == len(hashes)
    assert (await master.call("GET", "/repair/status", key=None)).code == 401
    assert (await master.call("GET", "/dashboard/state")).json["repair"] == status
    out, err = io.StringIO(), io.StringIO()
    assert await run_command(master.client(), show_status, argparse.Namespace(), out, err) == 0
    printed = out.getvalue()
    assert "planner: m1 (token 1)" in printed and "queue: 0" in printed
    assert "2+: 6" in printed and "repaired: 6 copies, 60 bytes" in printed
    assert "store store4: lost since" in printed


@pytest_twisted.ensureDeferred
async def test_copies_per_store_stay_within_the_limit(master) -> None:
    """With copies that do not finish, no store takes part in more than `per_store`
    copies, each of one content."""
    requests = await held_requests(master, batch_under=0)
    assert all(len(hashes) == 1 for _, _, hashes in requests)


@pytest_twisted.ensureDeferred
async def test_a_batch_takes_one_slot_of_each_of_its_stores(master) -> None:
    """Small content goes in batches (many content per request between one source and
    one target), and a batch counts as one copy against `per_store`."""
    requests = await held_requests(master, batch_under=1024)
    assert max(len(hashes) for _, _, hashes in requests) > 1


async def held_requests(master: Any, **settings: Any) -> list[tuple[str, str, list[str]]]:
    """The copy requests a planner with `per_store` 1 starts over 12 content when none
    finishes; checks no store is in two and some content is left waiting."""
    hashes = await cluster(master, hashes=12)
    stores = StandInStores(master.api)
    stores.hold = True
    job = planner(master, stores, per_store=1, **settings)
    await vote_down(master, "store4")
    await job.run_round()
    master.clock.advance(LOST_AFTER)
    for _ in range(3):
        await job.run_round()
        master.clock.advance(1)
    requests = stores.requests or [(source, target, [sha1])
                                   for sha1, source, target in stores.calls]
    involved = [name for source, target, _ in requests for name in (source, target)]
    assert involved and max(involved.count(name) for name in set(involved)) == 1
    assert 0 < len(stores.calls) < len(hashes)
    job.stopService()                 # abandons the copies in flight
    await job.copies_done()
    assert all(waiter.called for waiter in stores.waiting)
    return requests


@pytest_twisted.ensureDeferred
async def test_only_the_lease_holder_plans_and_a_successor_resumes_the_queue(master) -> None:
    """Two planners over one Redis: only the holder copies; when it stops, the other
    takes over after the lease TTL and finishes the queue from Redis."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    first = planner(master, stores, owner="m1", per_store=1)
    second = planner(master, stores, owner="m2", per_store=1)
    await vote_down(master, "store4")
    await first.run_round()
    await second.run_round()
    master.clock.advance(LOST_AFTER)
    stores.hold = True
    await first.run_round()
    await second.run_round()
    started = len(stores.calls)
    assert 0 < started < len(hashes)
    assert len({call[0] for call in stores.calls}) == started
    first.stopService()               # the holder dies with its copies unfinished
    assert (await master.call("GET", "/repair/status")).json["queue"] == len(hashes)
    stores.hold = False
    await rounds(second, master, 2)
    assert len(stores.calls) == started   # not yet: m1's lease runs 10 s
    await rounds(second, master, 20)
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    assert (await master.call("GET", "/repair/status")).json["planner"]["owner"] == "m2"


@pytest_twisted.ensureDeferred
async def test_a_failing_target_is_avoided_and_a_removed_store_is_lost_at_once(master) -> None:
    """A removed store's copies stop counting at once; a target that refuses (507) is
    counted as a failure and another target is used for that content."""
    hashes = await cluster(master, hashes=3)
    stores = StandInStores(master.api)
    stores.failing = {"store1"}
    job = planner(master, stores)
    await master.api.peers.remove("store4")
    await rounds(job, master, 15)
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    # store1 holds only what it held before (hash n is on store 1 + n % 3)
    assert [("store1" in rows[sha1]) for sha1 in hashes] == [n % 3 == 0 for n in range(3)]
    status = (await master.call("GET", "/repair/status")).json
    failures = sum(1 for call in stores.calls if call[2] == "store1")
    assert failures > 0 and status["repaired"]["failures"] == failures
    assert status["repaired"]["copies"] == len(hashes)


@pytest_twisted.ensureDeferred
async def test_a_restarted_planner_counts_down_time_from_when_the_store_went_down(master) -> None:
    """The time a store went down is kept in Redis: a planner started 20 s later (a new
    process, after the old lease expired) declares it lost 30 s after it went down."""
    hashes = await cluster(master, hashes=3)
    stores = StandInStores(master.api)
    await vote_down(master, "store4")
    went_down = master.clock.seconds()
    await planner(master, stores, owner="m1#old").run_round()
    master.clock.advance(20)
    job = planner(master, stores, owner="m1#new")
    await rounds(job, master, 9)
    status = (await master.call("GET", "/repair/status")).json
    assert status["stores"]["store4"] == {"state": DOWN, "since": went_down}
    assert stores.calls == []
    await rounds(job, master, 4)
    status = (await master.call("GET", "/repair/status")).json
    assert status["stores"]["store4"] == {"state": LOST, "since": went_down}
    assert sorted({call[0] for call in stores.calls}) == sorted(hashes)


@pytest_twisted.ensureDeferred
async def test_a_finished_copy_frees_its_slots_for_the_next_at_once(master) -> None:
    """Within one round, each finished copy starts the next: the queue drains without
    waiting for further rounds, one copy at a time with `per_store` 1."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    job = planner(master, stores, per_store=1, lost_after=1.0)
    await master.api.peers.remove("store4")
    await job.run_round()
    await job.copies_done()
    assert sorted(call[0] for call in stores.calls) == sorted(hashes)
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())


@pytest_twisted.ensureDeferred
async def test_copies_that_end_within_a_round_plan_from_the_rows_already_read(master) -> None:
    """Each copy that ends starts the next without reading the queue's head and rows
    again while they are under `ROWS_FRESH_SECONDS` old, except the row of the content
    whose copy ended (12 copies one after the other: the head read once and each row at
    most twice, not a window per copy)."""
    hashes = await cluster(master, hashes=12)
    stores = StandInStores(master.api)
    redis = CountingRedis(master.redis)
    job = planner(master, stores, redis=redis, per_store=1, batch_under=0)
    await master.api.peers.remove("store4")
    await job.run_round()
    await job.copies_done()
    assert sorted(call[0] for call in stores.calls) == sorted(hashes)
    assert set(redis.read) == set(hashes) and redis.heads == 1
    assert max(Counter(redis.read).values()) == 2
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())


@pytest_twisted.ensureDeferred
async def test_a_round_reads_again_the_rows_older_than_rows_fresh_seconds(master) -> None:
    """The head and rows read `ROWS_FRESH_SECONDS` ago are read again before planning
    from them."""
    hashes = await cluster(master, hashes=12)
    stores = StandInStores(master.api)
    stores.hold = True
    redis = CountingRedis(master.redis)
    job = planner(master, stores, redis=redis, per_store=1, batch_under=0)
    await master.api.peers.remove("store4")
    await job.run_round()
    assert len(stores.calls) == 1 and sorted(redis.read) == sorted(hashes)
    master.clock.advance(ROWS_FRESH_SECONDS / 2)
    await job.run_round()
    assert len(redis.read) == len(hashes) and redis.heads == 1
    master.clock.advance(ROWS_FRESH_SECONDS / 2)
    await job.run_round()
    assert redis.heads == 2
    copying = stores.calls[0][0]
    assert sorted(redis.read[len(hashes):]) == sorted(set(hashes) - {copying})
    job.stopService()
    await job.copies_done()


async def queued(master: Any) -> set[str]:
    """The content in the repair queue."""
    members = await master.redis.execute("ZRANGEBYSCORE", master.api.keys.repair_queue,
                                         "-inf", "+inf")
    return {m.decode() if isinstance(m, bytes) else m for m in members}


@pytest_twisted.ensureDeferred
async def test_a_dispatch_stops_its_walk_once_every_slot_is_taken(master) -> None:
    """With every store's slots taken, a round looks no further down the queue (content
    that meanwhile got its copies elsewhere leaves it once slots are free again) and never
    copies what already has its copies."""
    hashes = await cluster(master, hashes=12)
    stores = StandInStores(master.api)
    stores.hold = True
    job = planner(master, stores, batch_under=0)
    await master.api.peers.remove("store4")
    await job.run_round()
    assert len(stores.calls) == 3          # three survivors, per_store 2: every slot
    copying = {sha1 for sha1, _, _ in stores.calls}
    other = next(h for h in reversed(hashes) if h not in copying)
    holders = (await counted_rows(master, [other]))[other]
    extra = next(name for name in ("store1", "store2", "store3") if name not in holders)
    await master.api.inventory.publish(extra, parse_changes(
        [{"op": "add", "hash": other, "ext": "bin", "size": 10}]))
    master.clock.advance(ROWS_FRESH_SECONDS)
    await job.run_round()
    assert other in await queued(master)
    stores.hold = False
    for waiter in stores.waiting:
        sha1, _, target = stores.calls[stores.waiting.index(waiter)]
        await master.api.inventory.publish(target, parse_changes(
            [{"op": "add", "hash": sha1, "ext": "bin", "size": 10}]))
        waiter.callback({"existed": False})
    await job.copies_done()
    assert other not in await queued(master)
    assert other not in {sha1 for sha1, _, _ in stores.calls}


@pytest_twisted.ensureDeferred
async def test_per_store_bytes_paces_the_copies(master) -> None:
    """With `per_store_bytes` equal to one content's size, a store takes part in one copy
    a second: one copy per round among three stores, instead of all at once."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    job = planner(master, stores, per_store=5, per_store_bytes=10)
    await master.api.peers.remove("store4")
    await rounds(job, master, 1)
    assert len(stores.calls) == 1
    await rounds(job, master, 2)
    assert len(stores.calls) == 3
    await rounds(job, master, 4)
    assert sorted(call[0] for call in stores.calls) == sorted(hashes)


@pytest_twisted.ensureDeferred
async def test_content_whose_only_holder_is_down_waits_for_it_then_is_copied(master) -> None:
    """A content whose one counted copy is on a store that is down stays queued (no source)
    and is copied as soon as that store is up again, without another scan."""
    hashes = await cluster(master, hashes=3)
    stores = StandInStores(master.api)
    job = planner(master, stores)
    await vote_down(master, "store3")             # holds hashes[2], with store4
    await master.api.peers.remove("store4")
    await rounds(job, master, 3)
    assert sorted(call[0] for call in stores.calls) == sorted(hashes[:2])
    assert (await master.call("GET", "/repair/status")).json["queue"] == 1
    await master.redis.execute("DEL", votes_key(master.api.keys.prefix, "store3"))
    await rounds(job, master, 2)
    assert sorted(call[0] for call in stores.calls) == sorted(hashes)
    assert [call[1] for call in stores.calls if call[0] == hashes[2]] == ["store3"]


@pytest_twisted.ensureDeferred
async def test_a_scan_reads_every_row_over_several_chunks(master) -> None:
    """A scan goes through the whole inventory (several HSCAN chunks) and queues every
    content short of copies."""
    await cluster(master, hashes=0)
    many = [hashlib.sha1(b"row %d" % n).hexdigest() for n in range(2500)]
    for holder in ("store4", "store1"):
        await master.api.inventory.publish(holder, parse_changes(
            [{"op": "add", "hash": sha1, "ext": "bin", "size": 10} for sha1 in many]))
    stores = StandInStores(master.api)
    stores.hold = True
    job = planner(master, stores)
    await master.api.peers.remove("store4")
    await job.run_round()
    status = (await master.call("GET", "/repair/status")).json
    assert status["hashes"] == len(many) and status["copies"]["1"] == len(many)
    assert status["queue"] == len(many)
    job.stopService()
    await job.copies_done()


@pytest_twisted.ensureDeferred
async def test_a_copy_a_store_drops_is_made_again_before_the_next_scan(master) -> None:
    """A store withdrawing a copy (a scrub's quarantine) is seen on the inventory feed and
    the content gets its second copy in the next rounds, long before `rescan`."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    job = planner(master, stores, rescan=3600.0)
    await rounds(job, master, 2)
    assert stores.calls == []
    dropped = hashes[0]                # on store4 and store1
    await master.api.inventory.publish("store1", parse_changes(
        [{"op": "remove", "hash": dropped}]))
    await rounds(job, master, 2)
    assert [(sha1, source) for sha1, source, _ in stores.calls] == [(dropped, "store4")]
    assert len((await counted_rows(master, [dropped]))[dropped]) == 2


@pytest_twisted.ensureDeferred
async def test_a_copy_whose_store_is_voted_down_is_abandoned_and_planned_again(master) -> None:
    """A copy whose target hangs (never answers) is cancelled as soon as the ping net
    votes that store down, not after `copy_timeout`: its slots are freed, it counts as
    a failure, and the content is copied to another store in the same round."""
    hashes = await cluster(master, hashes=1)     # on store4 and store1
    stores = StandInStores(master.api)
    stores.hold = True
    job = planner(master, stores, copy_timeout=600.0)
    await master.api.peers.remove("store4")
    await job.run_round()
    assert len(stores.calls) == 1
    (sha1, source, hung), = stores.calls
    assert (sha1, source) == (hashes[0], "store1")
    master.clock.advance(1)
    await job.run_round()
    assert len(stores.calls) == 1 and not stores.waiting[0].called
    await vote_down(master, hung)
    master.clock.advance(1)
    await job.run_round()
    assert stores.waiting[0].called              # cancelled, long before copy_timeout
    assert [call[2] for call in stores.calls[1:]] == [
        ({"store2", "store3"} - {hung}).pop()]
    assert (await master.call("GET", "/repair/status")).json["repaired"]["failures"] == 1
    job.stopService()
    await job.copies_done()


@pytest_twisted.ensureDeferred
async def test_small_content_goes_in_batches_and_large_content_one_by_one(master) -> None:
    """Content under `batch_under` is copied in batches of at most `batch_items`, each
    from one source that holds all of it to one target, with a deadline scaled by its
    bytes; larger content one copy per request; each gets its second copy, and the totals
    count every content."""
    small = await cluster(master, hashes=12)
    large = [hashlib.sha1(b"large %d" % n).hexdigest() for n in range(2)]
    for sha1 in large:
        for holder in ("store4", "store1"):
            await master.api.inventory.publish(holder, parse_changes(
                [{"op": "add", "hash": sha1, "ext": "bin", "size": 2 * 1024**2}]))
    stores = StandInStores(master.api)
    job = planner(master, stores, batch_items=3, per_store=4)
    await master.api.peers.remove("store4")
    await rounds(job, master, 3)
    batched = [sha1 for _, _, hashes in stores.requests for sha1 in hashes]
    assert sorted(batched) == sorted(small)
    assert sorted(sha1 for sha1, _, _ in stores.calls if sha1 not in batched) == sorted(large)
    assert max(len(hashes) for _, _, hashes in stores.requests) == 3
    assert len(stores.requests) < len(small)
    before = await master.api.inventory.lookup_many(small)
    for source, _, hashes in stores.requests:
        assert all(source in before[sha1]["stores"] for sha1 in hashes)
    assert all(30.0 < timeout < 31.0 for timeout in stores.timeouts)
    rows = await counted_rows(master, small + large)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    status = (await master.call("GET", "/repair/status")).json
    assert status["repaired"]["copies"] == len(small) + len(large)
    assert status["repaired"]["failures"] == 0


@pytest_twisted.ensureDeferred
async def test_content_a_source_serves_corrupt_is_copied_from_another_holder(master) -> None:
    """A batch item the source's bytes do not match (the target answers `corrupt`) counts
    as a failure and is copied again after the retry delay from another holder."""
    hashes = await cluster(master, hashes=3)     # hash n on store4 and store 1 + n % 3
    assert (await master.call("POST", "/peers/store4/drain")).code == 200
    stores = StandInStores(master.api)
    stores.corrupt = {"store4"}
    job = planner(master, stores)
    await rounds(job, master, 2)
    first = {sha1: source for sha1, source, _ in reversed(stores.calls)}
    bad = sorted(sha1 for sha1, source in first.items() if source == "store4")
    assert bad and sorted(first) == sorted(hashes)
    await rounds(job, master, 12)
    for n, sha1 in enumerate(hashes):
        tried = [source for h, source, _ in stores.calls if h == sha1]
        assert tried == (["store4", "store{}".format(1 + n % 3)] if sha1 in bad
                         else [first[sha1]])
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    status = (await master.call("GET", "/repair/status")).json
    assert status["repaired"]["failures"] == len(bad) and status["repaired"]["copies"] == 3


@pytest_twisted.ensureDeferred
async def test_small_content_starts_before_large_content_ahead_of_it(master) -> None:
    """Within the head of the queue, batches of small content take the free slots before
    large content queued ahead of them (same count of copies)."""
    small = await cluster(master, hashes=12)
    candidates = (hashlib.sha1(b"large %d" % n).hexdigest() for n in range(500))
    large = [sha1 for sha1 in candidates if sha1 < min(small)][:2]
    assert large
    for sha1 in large:
        for holder in ("store4", "store1"):
            await master.api.inventory.publish(holder, parse_changes(
                [{"op": "add", "hash": sha1, "ext": "bin", "size": 2 * 1024**2}]))
    stores = StandInStores(master.api)
    stores.hold = True
    job = planner(master, stores, per_store=1)
    await master.api.peers.remove("store4")
    await job.run_round()
    assert stores.requests and {sha1 for sha1, _, _ in stores.calls} <= set(small)
    job.stopService()
    await job.copies_done()


@pytest_twisted.ensureDeferred
async def test_a_cleanly_stopped_planner_hands_its_lease_over_at_once(master) -> None:
    """A master that stops cleanly gives the planner's lease up: the other master's next
    round leads (and plans) at once, not after the lease's TTL; the stopped one plans
    nothing more."""
    hashes = await cluster(master)
    stores = StandInStores(master.api)
    first = planner(master, stores, owner="m1")
    second = planner(master, stores, owner="m2")
    await first.run_round()
    await second.run_round()
    assert first.lease.token and not second.lease.token
    await first.release()
    assert not first.lease.token
    master.clock.advance(1.0)                # well within the 10 s TTL
    await second.run_round()
    assert second.lease.token
    await vote_down(master, "store4")
    await rounds(second, master, int(LOST_AFTER) + 3)
    assert (await master.call("GET", "/repair/status")).json["planner"]["owner"] == "m2"
    rows = await counted_rows(master, hashes)
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    assert master.clock.getDelayedCalls() == []
