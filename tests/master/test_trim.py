"""Trim: content over `replicas` counted copies (a lost store came back) is trimmed back,
keeping the best zone spread, and only once the remaining holders confirm their copies."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred

from stretchfs.cli.repair import show_status
from stretchfs.master.cliconn import run_command
from stretchfs.master.inventory import parse_changes
from stretchfs.master.repair import pick_trim
from stretchfs.master.trim import RECENT_SECONDS, TRIM_BATCH
from stretchfs.pingnet.keys import votes_key
from tests.master.test_repair import (
    LOST_AFTER,
    ZONES,
    StandInStores,
    cluster,
    counted_rows,
    planner,
    rounds,
    state,
    vote_down,
)


def test_the_copy_trimmed_is_the_one_that_adds_least() -> None:
    """A copy in a zone that holds another goes first, the fuller store of them first; only
    a store that is up is trimmed; content at `replicas` is left alone."""
    stores = {"s1": state("s1", zone="a", free=100), "s2": state("s2", zone="b"),
              "s4": state("s4", zone="a", free=50)}
    assert pick_trim(["s1", "s2", "s4"], stores, 2) == "s4"
    assert pick_trim(["s1", "s2", "s4"], {**stores, "s4": state("s4", "down", zone="a",
                                                                 state="down")}, 2) == "s1"
    assert pick_trim(["s1", "s2"], stores, 2) is None
    assert pick_trim(["s1", "s2", "s4"], stores, 3) is None


class TrimStores(StandInStores):
    """Stand-in stores that also answer `exists` (no, for the stores in `missing`) and
    `remove` (publishing the removal), recording each call in `events`."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.events: list[tuple[str, str, str]] = []
        self.missing: set[str] = set()

    def client(self, url: str) -> "TrimStores._TrimClient":
        return TrimStores._TrimClient(self, super().client(url))

    class _TrimClient:
        def __init__(self, stores: "TrimStores", copier: Any) -> None:
            self.stores = stores
            self.name = copier.name
            self.fetch = copier.fetch
            self.fetch_batch = copier.fetch_batch

        async def exists(self, hashes: list[str], timeout: float | None = None) -> Any:
            self.stores.events += [("exists", self.name, h) for h in hashes]
            return {h: {"exists": self.name not in self.stores.missing} for h in hashes}

        def remove(self, sha1: str) -> Deferred[Any]:
            self.stores.events.append(("remove", self.name, sha1))
            return Deferred.fromCoroutine(self.stores.api.inventory.publish(
                self.name, parse_changes([{"op": "remove", "hash": sha1}])))


@pytest_twisted.ensureDeferred
async def test_a_returning_store_leaves_content_trimmed_back_to_replicas(master) -> None:
    """store4 is lost and repaired around; when it comes back every content has three
    counted copies and is trimmed to two in distinct zones, each removal only after both
    other holders confirmed theirs; a holder that does not confirm holds the trim back."""
    hashes = await cluster(master)
    stores = TrimStores(master.api)
    job = planner(master, stores)
    await vote_down(master, "store4")
    await rounds(job, master, 1)
    master.clock.advance(LOST_AFTER)
    await rounds(job, master, 4)
    rows = await counted_rows(master, hashes)
    assert all(len(holders) == 3 and "store4" in holders for holders in rows.values())
    stores.missing = {"store3"}
    await master.redis.execute("DEL", votes_key(master.api.keys.prefix, "store4"))
    await rounds(job, master, 3)
    rows = await counted_rows(master, hashes)
    # content trimmed so far kept two copies; store3 never confirmed, so any content whose
    # copies after the trim would include store3 keeps its three
    assert all(len(holders) in (2, 3) for holders in rows.values())
    assert any(len(holders) == 3 for holders in rows.values())
    stores.missing = set()
    await rounds(job, master, 3)
    rows = await counted_rows(master, hashes)
    assert all(len(holders) == 2 for holders in rows.values())
    assert all(len({ZONES[h] for h in holders}) == 2 for holders in rows.values())
    removes = [(i, name, sha1) for i, (op, name, sha1) in enumerate(stores.events)
               if op == "remove"]
    assert len(removes) == len(hashes)
    for index, victim, sha1 in removes:
        keepers = set(rows[sha1])
        asked = {name for op, name, h in stores.events[:index] if op == "exists" and h == sha1
                 and name not in stores.missing}
        assert victim not in keepers and keepers <= asked
    assert job.metrics.trims._value.get() == len(hashes)
    status = (await master.call("GET", "/repair/status")).json
    assert status["repaired"]["trims"] == len(hashes)
    assert status["copies"]["2+"] == len(hashes) and status["queue"] == 0
    out, err = io.StringIO(), io.StringIO()
    assert await run_command(master.client(), show_status, argparse.Namespace(), out, err) == 0
    assert "6 extra copies trimmed" in out.getvalue()


@pytest_twisted.ensureDeferred
async def test_more_content_than_one_trim_batch_is_all_trimmed_within_a_few_rounds(
        master) -> None:
    """A returning store brings back more content than one round trims (`TRIM_BATCH`): the
    content just trimmed does not hold the rest back, so every content is at two copies a
    few rounds later, well within `RECENT_SECONDS`."""
    hashes = await cluster(master, hashes=TRIM_BATCH + 20)
    stores = TrimStores(master.api)
    job = planner(master, stores, batch_items=1000)
    await vote_down(master, "store4")
    await rounds(job, master, 1)
    master.clock.advance(LOST_AFTER)
    await rounds(job, master, 6)
    rows = await counted_rows(master, hashes)
    assert all(len(holders) == 3 for holders in rows.values())
    await master.redis.execute("DEL", votes_key(master.api.keys.prefix, "store4"))
    back = master.clock.seconds()
    await rounds(job, master, 4)
    assert master.clock.seconds() - back < RECENT_SECONDS
    rows = await counted_rows(master, hashes)
    assert sorted(len(holders) for holders in rows.values()) == [2] * len(hashes)
    assert job.metrics.trims._value.get() == len(hashes)
