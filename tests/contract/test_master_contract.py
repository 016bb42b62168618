"""One contract for the master and every fake of it the other suites use.

Each test runs against the real MasterAPI (tests/master/harness.py: in memory,
on a real Redis, with a task.Clock) and against each fake covering those
calls, all reached the way the roles reach them (a `MasterClient`, or the fake
that stands in for one), so a fake cannot drift from the master unnoticed:

- `prism`: tests/prism/fakes.py FakeMaster, a Klein app behind a MasterClient;
- `standin`: tests/store/standin_master.py, the store e2e tests' and bench's master;
- `store`: tests/store/harness.py FakeMaster, a MasterClient stand-in;
- `pingnet`: tests/pingnet/test_registration.py FakeMaster, a MasterClient stand-in.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import pytest
import pytest_twisted

from stretchfs.errors import UpstreamError
from tests.helpers import CLUSTER_KEY

PUBLISHERS = ["real", "prism", "standin", "store"]
STORE_INVENTORY = ["real", "standin", "store"]
INVENTORY = ["real", "prism"]
SESSIONS = ["real", "prism"]
PURCHASES = ["real", "prism"]
PEERS = ["real", "pingnet"]


def sha(n: int) -> str:
    """A deterministic content id."""
    return hashlib.sha1(str(n).encode()).hexdigest()


def add(n: int, ext: str = "mp4", size: int = 100) -> dict[str, Any]:
    """An add change for content `n`."""
    return {"op": "add", "hash": sha(n), "ext": ext, "size": size}


class Subject:
    """A master under contract: `client` answers as a MasterClient does."""

    def __init__(self, client: Any, settled: Callable[[], Any] | None = None,
                 add_user: Callable[[str, str], Any] | None = None) -> None:
        self.client = client
        self._settled = settled
        self._add_user = add_user

    async def settled(self) -> None:
        """Wait until the master has nothing in flight (fakes never have)."""
        if self._settled is not None:
            await self._settled()

    async def add_user(self, username: str, password: str) -> None:
        """Make a user exist (an operator's job, outside the roles' contract)."""
        assert self._add_user is not None
        await self._add_user(username, password)


def _over_http(resource: Any, clock: Any, **kwargs: Any) -> Subject:
    """A subject reached by a MasterClient over StubTreq (answers delivered when done)."""
    from stretchfs.wire.master import MasterClient
    from tests.master.harness import InMemoryWire

    wire = InMemoryWire(resource)
    client = MasterClient(wire.stub, "http://master", CLUSTER_KEY, 10.0, clock)
    return Subject(client, wire.delivered, **kwargs)


@pytest.fixture
def make_master(redis_server, clock):
    """Builds the subject named `kind`; a real master's Redis is closed afterwards."""
    from stretchfs.config import RedisSettings
    from stretchfs.devcluster.redisacl import MASTER_USER
    from tests.master.harness import build_master

    opened: list[Any] = []

    def make(kind: str) -> Subject:
        if kind == "real":
            redis_server.flush()
            harness = build_master(redis_server.login_url(MASTER_USER, RedisSettings().prefix),
                                   clock)
            opened.append(harness.redis)

            async def add_user(username: str, password: str) -> None:
                await harness.client().create_user(username, password)

            return Subject(harness.client(), harness.settled, add_user)
        if kind == "prism":
            from tests.prism.fakes import FakeMaster

            fake = FakeMaster(clock)

            async def add_fake_user(username: str, password: str) -> None:
                fake.users[username] = password

            return _over_http(fake.app.resource(), clock, add_user=add_fake_user)
        if kind == "standin":
            from tests.store.standin_master import StandinMaster

            return _over_http(StandinMaster(CLUSTER_KEY), clock)
        if kind == "store":
            from tests.store.harness import FakeMaster as StoreFakeMaster

            return Subject(StoreFakeMaster())
        from tests.pingnet.test_registration import FakeMaster as PingnetFakeMaster

        fake_peers = PingnetFakeMaster()
        fake_peers.rows = []
        return Subject(fake_peers)

    yield make
    for redis in opened:
        pytest_twisted.blockon(redis.close())


async def _upstream_code(call: Any) -> int:
    try:
        await call
    except UpstreamError as exc:
        return exc.code
    raise AssertionError("the call succeeded")


# -- inventory ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", PUBLISHERS)
@pytest_twisted.ensureDeferred
async def test_publish_counts_effective_changes(make_master, kind) -> None:
    """A publish answers how many changes took effect and a cursor; replaying the batch
    applies nothing and leaves the cursor where it was."""
    master = make_master(kind).client
    first = await master.publish("s1", [add(1), add(2), {"op": "remove", "hash": sha(3)}])
    assert first["applied"] == 2 and isinstance(first["cursor"], str)
    assert await master.publish("s1", [add(1), add(2)]) == {"applied": 0,
                                                            "cursor": first["cursor"]}


@pytest.mark.parametrize("kind", STORE_INVENTORY)
@pytest_twisted.ensureDeferred
async def test_store_inventory_streams_what_a_store_published(make_master, kind) -> None:
    """A store's inventory stream holds one `{hash, ext, size}` row per hash it holds now."""
    master = make_master(kind).client
    await master.publish("s1", [add(1, size=5), add(2, ext="jpg"), add(3)])
    await master.publish("s1", [{"op": "remove", "hash": sha(3)}])
    await master.publish("s2", [add(4)])
    rows: list[dict[str, Any]] = []
    assert await master.store_inventory("s1", rows.append) == 2
    assert sorted(rows, key=lambda r: r["size"]) == [
        {"hash": sha(1), "ext": "mp4", "size": 5}, {"hash": sha(2), "ext": "jpg", "size": 100}]
    assert await master.store_inventory("nobody", rows.append) == 0


@pytest.mark.parametrize("kind", INVENTORY)
@pytest_twisted.ensureDeferred
async def test_lookup_answers_the_row_with_its_stores(make_master, kind) -> None:
    """A lookup answers hash, sha1, ext, size and the sorted stores; None when no store
    holds the hash, in single and bulk lookups."""
    master = make_master(kind).client
    await master.publish("s2", [add(1, ext="webm", size=7)])
    await master.publish("s1", [add(1, ext="webm", size=7)])
    row = {"hash": sha(1), "sha1": sha(1), "ext": "webm", "size": 7, "stores": ["s1", "s2"]}
    assert await master.lookup(sha(1)) == row
    assert await master.lookup(sha(2)) is None
    assert await master.lookup_many([sha(1), sha(2)]) == {sha(1): row, sha(2): None}


@pytest.mark.parametrize("kind", INVENTORY)
@pytest_twisted.ensureDeferred
async def test_snapshot_then_feed_from_its_cursor(make_master, kind) -> None:
    """The snapshot streams every row and a cursor; the feed after that cursor holds the
    later changes, each naming its store, and then nothing more."""
    master = make_master(kind).client
    await master.publish("s1", [add(1), add(2)])
    rows: list[dict[str, Any]] = []
    cursor = await master.inventory_snapshot(rows.append)
    assert sorted(r["hash"] for r in rows) == [sha(1), sha(2)]
    await master.publish("s2", [add(1, size=100)])
    await master.publish("s1", [{"op": "remove", "hash": sha(2)}])
    page = await master.inventory_feed(cursor, wait=0)
    assert page["changes"] == [
        {"op": "add", "hash": sha(1), "store": "s2", "ext": "mp4", "size": 100},
        {"op": "remove", "hash": sha(2), "store": "s1"}]
    assert (await master.inventory_feed(page["cursor"], wait=0)) == {
        "cursor": page["cursor"], "changes": []}


@pytest.mark.parametrize("kind", INVENTORY)
@pytest_twisted.ensureDeferred
async def test_feed_read_waits_on_the_clock_until_a_change(make_master, kind, clock) -> None:
    """A feed read with `wait` and nothing new answers when a change comes, or empty once
    `wait` has passed on the clock."""
    from twisted.internet.defer import ensureDeferred

    subject = make_master(kind)
    master = subject.client
    cursor = (await master.publish("s1", [add(1)]))["cursor"]
    waiting = ensureDeferred(master.inventory_feed(cursor, wait=5))
    await subject.settled()
    assert not waiting.called
    await master.publish("s1", [add(2)])
    assert [c["hash"] for c in (await waiting)["changes"]] == [sha(2)]
    cursor = (await master.inventory_feed(cursor, wait=0))["cursor"]
    waiting = ensureDeferred(master.inventory_feed(cursor, wait=5))
    await subject.settled()
    clock.advance(4.9)
    await subject.settled()
    assert not waiting.called
    clock.advance(0.1)
    await subject.settled()
    assert (await waiting) == {"cursor": cursor, "changes": []}


# -- sessions ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", SESSIONS)
@pytest_twisted.ensureDeferred
async def test_login_validate_update_logout(make_master, kind) -> None:
    """A login answers a session that validates, takes new data, and ends at logout."""
    subject = make_master(kind)
    master = subject.client
    await subject.add_user("ann", "pw-of-ann")
    answer = await master.login("ann", "pw-of-ann", ip="10.0.0.1")
    assert answer["success"] == "User logged in"
    session = answer["session"]
    assert set(session) == {"token", "username", "ip", "data", "created", "expires"}
    assert (session["username"], session["ip"], session["data"]) == ("ann", "10.0.0.1", {})
    assert len(session["token"]) == 64
    assert (await master.validate_session(session["token"]))["username"] == "ann"
    updated = await master.update_session(session["token"], {"theme": "dark"})
    assert updated["success"] == "Session updated"
    assert updated["session"]["data"] == {"theme": "dark"}
    assert (await master.validate_session(session["token"]))["data"] == {"theme": "dark"}
    assert await master.logout(session["token"]) == {"success": "User logged out"}
    assert await _upstream_code(master.validate_session(session["token"])) == 401
    assert await _upstream_code(master.update_session(session["token"], {})) == 401


@pytest.mark.parametrize("kind", SESSIONS)
@pytest_twisted.ensureDeferred
async def test_bad_password_and_reset(make_master, kind) -> None:
    """A wrong password is 401; a reset answers a new password that logs in."""
    subject = make_master(kind)
    master = subject.client
    await subject.add_user("ben", "old-password")
    assert await _upstream_code(master.login("ben", "wrong-password")) == 401
    assert await _upstream_code(master.login("nobody", "old-password")) == 401
    token = (await master.login("ben", "old-password"))["session"]["token"]
    reset = await master.reset_password(token)
    assert reset["success"] == "User password reset"
    assert await _upstream_code(master.login("ben", "old-password")) == 401
    assert (await master.login("ben", reset["password"]))["session"]["username"] == "ben"
    assert await _upstream_code(master.reset_password("A" * 64)) == 401


# -- purchases ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", PURCHASES)
@pytest_twisted.ensureDeferred
async def test_purchase_is_created_read_and_removed(make_master, kind, clock) -> None:
    """A created purchase has a drawn token and `expires = now + life`; it reads back
    (for its owner), and removing it counts 1, then 0."""
    master = make_master(kind).client
    created = await master.create_purchase({"hash": sha(1), "ext": "mp4", "life": 60,
                                            "referrer": ["example.com"], "ip": "1.2.3.4",
                                            "owner": "ann"})
    assert len(created["token"]) == 64 and created["token"].isalnum()
    assert created == {"token": created["token"], "hash": sha(1), "ext": "mp4", "life": 60,
                       "expires": clock.seconds() + 60, "referrer": ["example.com"],
                       "ip": "1.2.3.4", "owner": "ann", "created": clock.seconds()}
    assert await master.get_purchase(created["token"]) == created
    assert await master.get_purchase(created["token"], owner="ann") == created
    assert await master.get_purchase(created["token"], owner="bob") is None
    assert await master.remove_purchase(created["token"], owner="bob") == {
        "token": created["token"], "count": 0}
    assert await master.remove_purchase(created["token"]) == {"token": created["token"],
                                                              "count": 1}
    assert await master.remove_purchase(created["token"]) == {"token": created["token"],
                                                              "count": 0}
    assert await master.get_purchase(created["token"]) is None


@pytest.mark.parametrize("kind", PURCHASES)
@pytest_twisted.ensureDeferred
async def test_purchase_expires_on_the_clock(make_master, kind, clock) -> None:
    """A purchase reads back until `expires`, then answers as unknown."""
    master = make_master(kind).client
    created = await master.create_purchase({"hash": sha(1), "ext": "mp4", "life": 10})
    clock.advance(9.9)
    assert (await master.get_purchase(created["token"]))["token"] == created["token"]
    clock.advance(0.1)
    assert await master.get_purchase(created["token"]) is None


@pytest.mark.parametrize("kind", PURCHASES)
@pytest_twisted.ensureDeferred
async def test_purchase_snapshot_and_feed(make_master, kind) -> None:
    """The purchase snapshot streams live purchases and a cursor; the feed after it holds
    the later purchase as an add and the removal by token."""
    master = make_master(kind).client
    first = await master.create_purchase({"hash": sha(1), "ext": "mp4"})
    rows: list[dict[str, Any]] = []
    cursor = await master.purchase_snapshot(rows.append)
    assert rows == [first]
    second = await master.create_purchase({"hash": sha(2), "ext": "jpg"})
    await master.remove_purchase(first["token"])
    page = await master.purchase_feed(cursor, wait=0)
    assert page["changes"] == [{"op": "add", "purchase": second},
                               {"op": "remove", "token": first["token"]}]


# -- peers -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PEERS)
@pytest_twisted.ensureDeferred
async def test_registered_peer_is_listed_and_its_flags_set(make_master, kind) -> None:
    """Registering answers the peer's record, active and writable with its URL; the list
    holds it; an update answers the record with the new flag."""
    master = make_master(kind).client
    record = await master.register_peer({"name": "store1", "role": "store",
                                         "host": "127.0.0.5", "port": 8200, "ping_port": 8300})
    assert {k: record[k] for k in ("name", "role", "host", "port", "ping_port", "url",
                                   "active", "writable")} == {
        "name": "store1", "role": "store", "host": "127.0.0.5", "port": 8200,
        "ping_port": 8300, "url": "http://127.0.0.5:8200", "active": True, "writable": True}
    assert await master.list_peers() == [record]
    updated = await master.update_peer("store1", writable=False)
    assert (updated["name"], updated["active"], updated["writable"]) == ("store1", True, False)
    assert [p["writable"] for p in await master.list_peers()] == [False]
