"""Mirrors: start-up gating, feeds, 410 reload, master outages."""

from __future__ import annotations

from tests.prism.harness import make_prism

H1 = "a" * 40
H2 = "b" * 40


def test_health_is_503_until_both_snapshots_are_loaded(tmp_path) -> None:
    """/health answers 503 with the reason while a snapshot is still loading, then 200."""
    from twisted.internet.defer import Deferred

    hold: Deferred[None] = Deferred()

    def prefill(master):
        master.hold_snapshot = hold

    prism = make_prism(tmp_path, prefill=prefill)
    code, body, _ = prism.call("GET", "/health", token=None)
    assert code == 503
    assert "snapshot" in body["error"]
    prism.master.hold_snapshot = None
    hold.callback(None)
    prism.pump()
    code, body, _ = prism.call("GET", "/health", token=None)
    assert code == 200 and body["status"] == "ok"
    prism.stop()


def test_snapshot_rows_are_in_the_mirror_at_start(tmp_path) -> None:
    """Inventory and purchases present at start-up are served from the mirrors."""
    rows = {}

    def prefill(master):
        master.add_content(H1, "mp4", 10, ["store1", "store2"])
        rows["p"] = master.add_purchase(H1, "mp4")

    prism = make_prism(tmp_path, prefill=prefill)
    record = prism.service.inventory_sync.mirror.get(H1)
    assert record.stores == ("store1", "store2") and record.ext == "mp4" and record.size == 10
    found = prism.service.purchase_sync.mirror.get(rows["p"]["token"], prism.clock.seconds())
    assert found.sha1 == H1
    prism.stop()


def test_feed_changes_show_up_without_waiting_for_the_poll_timeout(tmp_path) -> None:
    """A change published after start-up is applied as soon as the long-poll returns it."""
    prism = make_prism(tmp_path)
    assert prism.service.inventory_sync.mirror.get(H2) is None
    prism.master.add_content(H2, "jpg", 5, ["store3"])
    prism.pump()
    assert prism.service.inventory_sync.mirror.get(H2).stores == ("store3",)
    row = prism.master.add_purchase(H2, "jpg")
    prism.pump()
    assert prism.service.purchase_sync.mirror.get(row["token"], prism.clock.seconds())
    prism.master.remove_purchase_row(row["token"])
    prism.pump()
    assert prism.service.purchase_sync.mirror.get(row["token"], prism.clock.seconds()) is None
    prism.stop()


def test_an_idle_feed_keeps_polling(tmp_path) -> None:
    """With nothing new the long-poll times out and is renewed; later changes still arrive."""
    prism = make_prism(tmp_path)
    for _ in range(5):
        prism.pump(5.0)
    prism.master.add_content(H1, "bin", 1, ["store1"])
    prism.pump()
    assert prism.service.inventory_sync.mirror.get(H1) is not None
    prism.stop()


def test_trimmed_cursor_reloads_the_snapshot(tmp_path) -> None:
    """A 410 from the feed makes the prism reload the snapshot and keep following."""
    prism = make_prism(tmp_path)
    sync = prism.service.inventory_sync
    assert sync.reloads == 1
    prism.master.trimmed["inventory"] = 10**6
    prism.master.inv_feed.extend([{"op": "noop"}] * 3)
    prism.master.inventory[H1] = {"hash": H1, "ext": "bin", "size": 3, "stores": ["store2"]}
    prism.master._wake("inventory")
    prism.pump()
    prism.master.trimmed["inventory"] = 0
    prism.pump(1.0)
    assert sync.reloads == 2
    assert sync.mirror.get(H1).stores == ("store2",)
    prism.stop()


def test_master_outage_keeps_the_mirror_and_recovers(tmp_path) -> None:
    """While the master is down the mirror stays; after the grace period health says why."""
    def prefill(master):
        master.add_content(H1, "bin", 1, ["store1"])

    prism = make_prism(tmp_path, prefill=prefill)
    prism.network.down.add("master")
    prism.pump(5.0)
    for _ in range(40):
        prism.pump(1.0)
    code, body, _ = prism.call("GET", "/health", token=None)
    assert code == 503 and "master unreachable" in body["error"]
    assert prism.service.inventory_sync.mirror.get(H1) is not None
    prism.network.down.discard("master")
    prism.pump(1.0)
    prism.pump(5.0)
    code, _, _ = prism.call("GET", "/health", token=None)
    assert code == 200
    prism.stop()


def test_stop_leaves_no_timers(tmp_path) -> None:
    """After stopService no delayed call of the prism remains (the fake master may still wait)."""
    prism = make_prism(tmp_path)
    prism.pump(1.0)
    prism.stop()
    leftover = [c for c in prism.clock.getDelayedCalls() if "FakeMaster" not in repr(c)]
    assert leftover == []


def test_a_snapshot_already_trimmed_does_not_spin(tmp_path) -> None:
    """A 410 right after a reload waits before reloading again instead of looping hot."""
    prism = make_prism(tmp_path)
    sync = prism.service.inventory_sync
    prism.master.trimmed["inventory"] = 10**6
    prism.master.inv_feed.append({"op": "noop"})
    prism.master._wake("inventory")
    prism.pump()
    assert sync.reloads <= 3
    prism.pump(1.0)
    assert sync.reloads <= 5
    prism.stop()


def test_feed_page_past_the_reply_cap_reloads_the_snapshot(tmp_path) -> None:
    """A feed page bigger than a reply may be (an older master) does not stall the mirror
    on one cursor forever: the prism reloads the snapshot and follows on from there."""
    prism = make_prism(tmp_path)
    sync = prism.service.inventory_sync
    reloads = sync.reloads
    prism.master.inv_feed.append({"op": "noop", "pad": "x" * (17 * 1024 * 1024)})
    prism.master.inventory[H1] = {"hash": H1, "ext": "bin", "size": 3, "stores": ["store2"]}
    prism.master._wake("inventory")
    prism.pump()
    prism.pump(1.0)
    assert sync.reloads == reloads + 1
    assert sync.mirror.get(H1).stores == ("store2",)
    prism.stop()
