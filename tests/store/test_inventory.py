"""Inventory sync: the master's view is made to match the disk, both ways."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from stretchfs.store.inventory import KnownInventory, SpoolSink, diff_inventory
from stretchfs.store.layout import ContentStore
from tests.store.harness import (
    AUTH,
    FakeMaster,
    build,
    direct,
    request,
    sha1_of,
    stop,
    stub_for,
)


def _write(root: str, data: bytes, ext: str) -> str:
    sha1 = sha1_of(data)
    folder = os.path.join(root, "content", sha1[:2], sha1[2:4])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "{}.{}".format(sha1, ext)), "wb") as handle:
        handle.write(data)
    return sha1


def test_sync_publishes_unknown_files_and_missing_entries(tmp_path, clock) -> None:
    """At start-up files the master lacks are added, entries without a file are removed."""
    root = str(tmp_path / "store1")
    on_disk = _write(root, b"on disk only", "jpg")
    both = _write(root, b"on both", "png")
    resized = _write(root, b"size differs", "bin")
    gone = "f" * 40
    master = FakeMaster()
    master.rows["store1"] = {
        both: {"hash": both, "ext": "png", "size": len(b"on both")},
        resized: {"hash": resized, "ext": "bin", "size": 1},
        gone: {"hash": gone, "ext": "mp4", "size": 5},
    }
    with capturedLogs() as events:
        service = build(tmp_path, clock, master=master)
    changes = master.changes()
    assert {"op": "add", "hash": on_disk, "ext": "jpg", "size": 12} in changes
    assert {"op": "add", "hash": resized, "ext": "bin", "size": 12} in changes
    assert {"op": "remove", "hash": gone} in changes
    assert not any(c["hash"] == both for c in changes)
    assert set(master.rows["store1"]) == {on_disk, both, resized}
    report = service.sync.last_report
    assert (report.files, report.added, report.removed) == (3, 2, 1)
    done = [e for e in events if e.get("event") == "inventory_synced"]
    assert done and done[0]["files"] == 3
    stop(service)
    assert clock.getDelayedCalls() == []


def test_sync_runs_again_every_interval(tmp_path, clock) -> None:
    """The sync repeats every [inventory] interval and catches files added behind its back."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    assert master.listed == 1
    sha1 = _write(str(tmp_path / "store1"), b"dropped in by hand", "txt")
    clock.advance(service.config.inventory.interval)
    assert master.listed == 2
    assert master.changes()[-1]["hash"] == sha1
    stop(service)


def test_failed_sync_is_retried_soon(tmp_path, clock) -> None:
    """A sync that cannot reach the master is retried after 30 s, not after the interval."""
    master = FakeMaster()
    master.down = True
    service = build(tmp_path, clock, master=master)
    assert service.sync.last_report is None
    master.down = False
    clock.advance(30)
    assert service.sync.last_report is not None
    stop(service)
    assert clock.getDelayedCalls() == []


def test_sync_skips_junk_files(tmp_path) -> None:
    """Files that are not <sha1>.<ext> in the right folder are counted and skipped."""
    root = str(tmp_path)
    store = ContentStore(root)
    store.prepare()
    good = _write(root, b"good", "txt")
    os.makedirs(os.path.join(root, "content", "zz"), exist_ok=True)
    with open(os.path.join(root, "content", good[:2], good[2:4], "README"), "w") as handle:
        handle.write("x")
    misplaced = sha1_of(b"misplaced")
    folder = os.path.join(root, "content", good[:2], good[2:4])
    with open(os.path.join(folder, misplaced + ".txt"), "w") as handle:
        handle.write("x")
    sink = SpoolSink(os.path.join(root, "spool"))
    report = diff_inventory(store, KnownInventory(), sink)
    assert (report.files, report.invalid, report.added) == (1, 2, 1)
    assert [c["hash"] for batch in sink.batches(10) for c in batch] == [good]


def test_changes_during_a_sync_are_not_overridden(tmp_path, clock) -> None:
    """A hash removed while a sync runs is not re-added by that sync."""
    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    stub = stub_for(service)
    data = b"racing"
    sha1 = sha1_of(data)
    request(stub, "PUT", "/content/put/{}.bin".format(sha1), data=data, headers=AUTH)
    master.rows["store1"].pop(sha1)
    guard = service.content.guard
    guard.start()
    with guard.changing(sha1):
        pass
    from stretchfs.store.inventory import JournalSink

    known = KnownInventory()
    sink = JournalSink(service.sync._journal, guard.touched)
    report = diff_inventory(service.content.store, known, sink)
    assert report.added == 1 and sink.written == 0


def test_sync_leaves_alone_a_change_in_flight_when_it_starts(tmp_path, clock) -> None:
    """A PUT linked but not yet journaled when a sync starts is not journaled by the sync
    too: the sync's stale view could land after a later remove and resurrect the file."""
    from twisted.internet.defer import Deferred

    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    content = service.content
    data = b"in flight"
    sha1 = sha1_of(data)
    held: list[tuple[Deferred, tuple]] = []

    def hold_after_link(function, *args, **kwargs):
        """The commit's thread stopped between the link and the journal append."""
        if function != content._commit_blocking:
            return direct(function, *args, **kwargs)
        upload = args[0]
        waiting: Deferred = Deferred()
        held.append((waiting, content.store.commit(upload.path, upload.sha1, upload.ext)))
        return waiting

    content._run_blocking = hold_after_link
    upload = content.receiver.open(sha1, "bin", len(data), StringTransport())
    upload.write(data)
    commit = Deferred.fromCoroutine(content.commit(upload))
    assert len(held) == 1 and content.store.find(sha1) is not None  # linked, not journaled
    service.sync.sync_now()
    assert service.sync.last_report.added == 1  # the sync saw the file...
    assert master.changes() == []  # ...and left it to the PUT's own entry
    waiting, (stored, created) = held[0]
    content.publisher.append([{"op": "add", "hash": sha1, "ext": "bin", "size": len(data)}])
    waiting.callback((stored, created))
    assert commit.called
    assert master.changes() == [{"op": "add", "hash": sha1, "ext": "bin", "size": len(data)}]
    stop(service)


def test_known_inventory_skips_malformed_rows() -> None:
    """Rows with bad hashes, extensions or sizes are counted and ignored."""
    known = KnownInventory()
    known.add_row({"hash": "a" * 40, "ext": "mp4", "size": 3})
    for bad in ({"hash": "A" * 40, "ext": "mp4", "size": 1}, {"hash": "a" * 40},
                {"hash": "b" * 40, "ext": "../x", "size": 1}, "junk",
                {"hash": "c" * 40, "ext": "mp4", "size": -1}):
        known.add_row(bad)
    assert len(known) == 1 and known.invalid == 5


def test_sync_of_a_missing_content_folder_removes_nothing(tmp_path) -> None:
    """An unmounted disk (no content/ folder) stops the sync instead of publishing removals."""
    import shutil

    import pytest

    from stretchfs.errors import NotReady

    root = str(tmp_path)
    store = ContentStore(root)
    store.prepare()
    shutil.rmtree(os.path.join(root, "content"))
    known = KnownInventory()
    known.add_row({"hash": "a" * 40, "ext": "mp4", "size": 3})
    sink = SpoolSink(os.path.join(root, "spool"))
    with pytest.raises(NotReady):
        diff_inventory(store, known, sink)
    assert [c for batch in sink.batches(10) for c in batch] == []


@pytest_twisted.ensureDeferred
async def test_hand_run_sync_refuses_while_the_store_runs(tmp_path, clock) -> None:
    """`stretchfs inventory sync` does not publish beside a running store process (two
    writers could publish one hash's changes out of order): exit 75 with the reason."""
    import io

    from twisted.internet import reactor

    from stretchfs.cli.inventory import EX_TEMPFAIL, ProgressBar, sync_once

    service = build(tmp_path, clock)
    out = io.StringIO()
    code = await sync_once(reactor, service.config, False, ProgressBar(io.StringIO(), True),
                           out)
    assert code == EX_TEMPFAIL
    assert "running" in out.getvalue()
    stop(service)


def test_known_inventory_past_4096_extensions_still_compares_exactly() -> None:
    """Beyond the packed extension ids, rows still compare by (extension, size)."""
    known = KnownInventory()
    for n in range(5000):
        known.add_row({"hash": "{:040x}".format(n), "ext": "e{}".format(n), "size": 1})
    assert known.pack("e4999", 1) == known.rows[bytes.fromhex("{:040x}".format(4999))]
    assert known.pack("e4998", 1) != known.pack("e4999", 1)
    assert known.pack("e4999", 2) != known.pack("e4999", 1)
