"""Drain and remove of a store: the planner copies what a drained store holds, `peer remove`
refuses a store that holds the only counted copy of anything (docs/repair.md)."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from dataclasses import replace
from typing import Any

import pytest_twisted

from stretchfs.cli import peers
from stretchfs.cli.main import build_parser
from stretchfs.cli.repair import show_status
from stretchfs.master.cliconn import run_command
from stretchfs.master.inventory import parse_changes
from stretchfs.master.repair import copyable, counted_holders, pick_source, pick_target
from tests.master.test_repair import (
    StandInStores,
    cluster,
    counted_rows,
    planner,
    rounds,
    state,
)


def test_a_drained_store_serves_as_source_but_its_copies_do_not_count() -> None:
    """Its copies are not counted, it is never a target, but it may be the source."""
    stores = {"s1": replace(state("s1"), drained=True, writable=False),
              "s2": state("s2", zone="b")}
    assert counted_holders(["s1"], stores) == [] and copyable(["s1"], stores)
    assert pick_source(["s1"], stores, {}, 2) == "s1"
    assert pick_target(["s2"], stores, 10, {}, 2) is None
    lost = {"s1": state("s1", state="lost")}
    assert not copyable(["s1"], lost) and pick_source(["s1"], lost, {}, 2) is None


async def only_on(master: Any, store: str) -> str:
    """A content published by `store` alone."""
    sha1 = hashlib.sha1(b"only on " + store.encode()).hexdigest()
    await master.api.inventory.publish(store, parse_changes(
        [{"op": "add", "hash": sha1, "ext": "bin", "size": 10}]))
    return sha1


@pytest_twisted.ensureDeferred
async def test_remove_refuses_a_store_with_the_only_counted_copy_unless_forced(master) -> None:
    """The 409 names how many hashes; a lost store's copies do not count; --force removes;
    an unknown peer is 404 with or without force; a prism is removed without a check."""
    await cluster(master)                 # hash n on store4 and store 1 + n % 3
    await only_on(master, "store4")
    refused = await master.call("POST", "/peers/store4/remove")
    assert refused.code == 409
    assert "only counted copy of 1 hashes" in refused.json["error"]
    # store2 lost: the two hashes it shared with store4 now count only there
    await master.redis.execute("HSET", master.api.keys.repair_stores, "store2",
                               json.dumps({"state": "lost", "since": 0.0}))
    refused = await master.call("POST", "/peers/store4/remove")
    assert "only counted copy of 3 hashes" in refused.json["error"]
    assert (await master.call("POST", "/peers/store1/remove", {"force": "yes"})).code == 400
    client, out, err = master.client(), io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["peer", "remove", "store4", "--master", "http://m:1"])
    assert args.force is False and build_parser().parse_args(
        ["peer", "remove", "store4", "--force", "--master", "http://m:1"]).force is True
    assert await run_command(client, peers.remove_peer, args, out, err) == 1
    assert "409" in err.getvalue() and "3 hashes" in err.getvalue()
    assert [p["name"] for p in await master.api.peers.list()][-1] == "store4"
    args.force = True
    assert await run_command(client, peers.remove_peer, args, out, err) == 0
    assert "store4" not in [p["name"] for p in await master.api.peers.list()]
    for body in (None, {"force": True}):
        missing = await master.call("POST", "/peers/nosuch/remove", body)
        assert missing.code == 404 and "no peer named nosuch" in missing.json["error"]
    await master.api.peers.register({"name": "prism1", "role": "prism", "host": "h",
                                     "port": "80"})
    assert (await master.call("POST", "/peers/prism1/remove")).code == 200


@pytest_twisted.ensureDeferred
async def test_a_drained_store_is_copied_elsewhere_then_removable(master) -> None:
    """Drain makes the store read-only; the planner copies everything it holds onto other
    stores (the content only it holds first, from it); the status counts down to zero and
    `peer remove` then succeeds without force."""
    hashes = await cluster(master)
    alone = await only_on(master, "store4")
    stores = StandInStores(master.api)
    job = planner(master, stores)
    client, out, err = master.client(), io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["peer", "drain", "store4", "--master", "http://m:1"])
    assert await run_command(client, peers.drain_peer, args, out, err) == 0
    assert "store store4 drained" in out.getvalue()
    record = (await master.call("GET", "/peers/store4")).json
    assert record["writable"] is False and record["drained"] is True
    # every content it holds is short of 2 counted copies without it
    assert (await master.call("GET", "/repair/status")).json["draining"] == {"store4": 7}
    assert (await master.call("POST", "/peers/store4/remove")).code == 409
    await rounds(job, master, 6)
    assert stores.calls[0][:2] == (alone, "store4")
    assert all(target != "store4" for _, _, target in stores.calls)
    rows = await counted_rows(master, hashes + [alone])
    assert all(len(set(holders) - {"store4"}) == 2 for holders in rows.values())
    status = (await master.call("GET", "/repair/status")).json
    assert status["draining"] == {"store4": 0} and status["queue"] == 0
    out = io.StringIO()
    assert await run_command(client, show_status, argparse.Namespace(), out, err) == 0
    assert "store store4: drained, everything it holds has its copies elsewhere" in \
        out.getvalue()
    assert (await master.call("POST", "/peers/store4/remove")).code == 200


@pytest_twisted.ensureDeferred
async def test_drain_refuses_unknown_stores_prisms_and_the_last_writable_store(master) -> None:
    """404 for an unknown name, 400 for a prism, 409 when no other store is writable;
    making a store writable again ends its drain."""
    await cluster(master, hashes=1)
    missing = await master.call("POST", "/peers/nosuch/drain")
    assert missing.code == 404 and "no peer named nosuch" in missing.json["error"]
    await master.api.peers.register({"name": "prism1", "role": "prism", "host": "h",
                                     "port": "80"})
    assert (await master.call("POST", "/peers/prism1/drain")).code == 400
    for name in ("store1", "store2", "store3"):
        await master.api.peers.update(name, {"writable": False})
    last = await master.call("POST", "/peers/store4/drain")
    assert last.code == 409 and "last writable store" in last.json["error"]
    assert (await master.call("GET", "/peers/store4")).json["drained"] is False
    await master.api.peers.update("store1", {"writable": True})
    assert (await master.call("POST", "/peers/store4/drain")).json["drained"] is True
    assert (await master.call("POST", "/peers/store1/drain")).code == 409
    again = await master.call("POST", "/peers/store4/update", {"writable": True})
    assert again.json["drained"] is False and again.json["writable"] is True
    assert (await master.call("GET", "/repair/status")).json["draining"] == {}
