"""The publish journal and publisher: ordered, batched, durable across restarts."""

from __future__ import annotations

import os

from stretchfs.store.journal import Journal
from stretchfs.store.publisher import InventoryPublisher
from tests.store.harness import AUTH, FakeMaster, build, direct, request, sha1_of, stop, stub_for


def _add(n: int) -> dict:
    return {"op": "add", "hash": "{:040x}".format(n), "ext": "bin", "size": n}


def _publisher(journal: Journal, master: FakeMaster, clock, batch_size: int = 3):
    publisher = InventoryPublisher(journal, master, "store1", clock=clock,
                                   batch_size=batch_size, run_blocking=direct)
    publisher.startService()
    return publisher


def _journal_with_tail(tmp_path, tail: bytes) -> Journal:
    """A journal holding `_add(1)` and then the raw bytes `tail`, reopened."""
    journal = Journal(str(tmp_path))
    journal.open()
    journal.append([_add(1)])
    journal.close()
    with open(os.path.join(str(tmp_path), "changes.ndjson"), "ab") as handle:
        handle.write(tail)
    again = Journal(str(tmp_path))
    again.open()
    return again


def test_journal_keeps_unacknowledged_changes_across_reopen(tmp_path) -> None:
    """Appended changes not yet acknowledged are pending again after a reopen."""
    journal = Journal(str(tmp_path))
    journal.open()
    journal.append([_add(1), _add(2), _add(3)])
    batch, end = journal.read_batch(2)
    journal.ack(end, len(batch))
    journal.close()
    again = Journal(str(tmp_path))
    again.open()
    assert again.pending == 1
    assert again.read_batch(10)[0] == [_add(3)]


def test_journal_drops_a_torn_last_line(tmp_path) -> None:
    """A half-written last line (crash mid-append) is cut on open; earlier lines survive."""
    again = _journal_with_tail(tmp_path, b'{"op":"add","ha')
    again.append([_add(2)])
    assert again.read_batch(10)[0] == [_add(1), _add(2)]


def test_journal_compacts_when_everything_is_acknowledged(tmp_path) -> None:
    """Once all is acknowledged and the file is big enough, it is truncated."""
    journal = Journal(str(tmp_path), compact_bytes=10)
    journal.open()
    journal.append([_add(1), _add(2)])
    batch, end = journal.read_batch(10)
    journal.ack(end, len(batch))
    assert os.path.getsize(journal.path) == 0 and journal.pending == 0
    journal.append([_add(3)])
    assert journal.read_batch(10)[0] == [_add(3)]


def test_publisher_sends_in_order_in_batches(tmp_path, clock) -> None:
    """Changes go to the master in journal order, at most batch_size per call."""
    journal = Journal(str(tmp_path))
    journal.open()
    master = FakeMaster()
    publisher = _publisher(journal, master, clock)
    publisher.record([_add(n) for n in range(7)])
    assert [len(batch) for _, batch in master.batches] == [3, 3, 1]
    assert master.changes() == [_add(n) for n in range(7)]
    assert publisher.backlog == 0


def test_publisher_queues_while_master_is_down_and_replays_in_order(tmp_path, clock) -> None:
    """While the master is down changes stay queued; retries replay them in order."""
    journal = Journal(str(tmp_path))
    journal.open()
    master = FakeMaster()
    master.down = True
    publisher = _publisher(journal, master, clock)
    publisher.record([_add(1)])
    publisher.record([_add(2), _add(3)])
    assert publisher.backlog == 3 and master.batches == []
    clock.advance(1)
    clock.advance(2)
    assert master.batches == []
    master.down = False
    clock.advance(4)
    assert master.changes() == [_add(1), _add(2), _add(3)]
    publisher.stopService()
    assert clock.getDelayedCalls() == []


def _put_while_master_is_down(tmp_path, clock, data: bytes):
    """A store whose master is down, after one acknowledged PUT of `data`:
    (master, store, sha1)."""
    master = FakeMaster()
    master.down = True
    service = build(tmp_path, clock, master=master)
    sha1 = sha1_of(data)
    assert request(stub_for(service), "PUT", "/content/put/{}.bin".format(sha1), data=data,
                   headers=AUTH)[0] == 201
    return master, service, sha1


def test_queued_changes_survive_a_store_restart(tmp_path, clock) -> None:
    """Master down, PUT, store restarted: the add is published once the master is back."""
    data = b"durable"
    master, first, sha1 = _put_while_master_is_down(tmp_path, clock, data)
    stop(first)
    assert clock.getDelayedCalls() == []
    second = build(tmp_path, clock, master=master)
    assert second.publisher.backlog == 1
    master.down = False
    clock.advance(1)
    # The journal's add is replayed first; the start-up sync waits for that backlog
    # and then finds nothing left to publish.
    assert master.changes() == [{"op": "add", "hash": sha1, "ext": "bin", "size": len(data)}]
    clock.advance(1)
    assert master.listed == 1
    assert master.changes() == [{"op": "add", "hash": sha1, "ext": "bin", "size": len(data)}]
    stop(second)


def test_stop_cancels_the_retry(tmp_path, clock) -> None:
    """Stopping the publisher leaves no delayed call behind."""
    journal = Journal(str(tmp_path))
    journal.open()
    master = FakeMaster()
    master.down = True
    publisher = _publisher(journal, master, clock)
    publisher.record([_add(1)])
    assert clock.getDelayedCalls()
    publisher.stopService()
    assert clock.getDelayedCalls() == []


def test_sync_waits_for_the_journal_backlog(tmp_path, clock) -> None:
    """A sync does not download the master's view while queued changes are unpublished."""
    master, service, _ = _put_while_master_is_down(tmp_path, clock, b"queued")
    listed = master.listed
    master.down = False
    service.sync.sync_now()
    assert master.listed == listed
    clock.advance(2)
    assert service.publisher.backlog == 0
    assert master.listed == listed + 1
    stop(service)


def test_compaction_leaves_no_stale_offset(tmp_path) -> None:
    """After a compaction, changes appended later are pending again after a restart."""
    journal = Journal(str(tmp_path), compact_bytes=10)
    journal.open()
    journal.append([{"op": "add", "hash": "a" * 40, "ext": "bin", "size": 1}])
    changes, offset = journal.read_batch(10)
    journal.ack(offset, len(changes))
    assert journal.pending == 0
    journal.append([{"op": "remove", "hash": "b" * 40}])
    journal.close()
    again = Journal(str(tmp_path))
    again.open()
    assert again.pending == 1
    assert again.read_batch(10)[0] == [{"op": "remove", "hash": "b" * 40}]
    again.close()


def test_disk_change_and_journal_append_are_serialized_per_hash(tmp_path, clock) -> None:
    """A second change of the same hash waits until the first is on disk and journaled."""
    from twisted.internet.defer import Deferred, ensureDeferred

    service = build(tmp_path, clock)
    content = service.content
    order: list[str] = []
    first_gate: Deferred[None] = Deferred()

    async def change(label: str, gate: Deferred[None] | None) -> None:
        async with content._exclusive("a" * 40):
            order.append(label + " start")
            if gate is not None:
                await gate
            order.append(label + " end")

    first = ensureDeferred(change("put", first_gate))
    second = ensureDeferred(change("remove", None))
    assert order == ["put start"]
    first_gate.callback(None)
    assert order == ["put start", "put end", "remove start", "remove end"]
    assert first.called and second.called
    assert content._hash_locks == {}
    stop(service)


def test_unreadable_journal_line_does_not_keep_the_publisher_busy(tmp_path, clock) -> None:
    """A corrupt (but complete) line is skipped; once the rest is acknowledged nothing is
    pending, so the publisher goes idle instead of looping on an empty batch."""
    journal = _journal_with_tail(tmp_path, b"{not json}\n")
    journal.append([_add(2)])
    assert journal.pending == 3
    master = FakeMaster()
    publisher = _publisher(journal, master, clock)
    assert master.changes() == [_add(1), _add(2)]
    assert journal.pending == 0
    assert publisher.backlog == 0
    publisher.stopService()


def test_failed_journal_write_leaves_no_partial_line(tmp_path) -> None:
    """A write that fails half-way (disk full) is cut back off the journal: the next
    append and every later read see whole lines only, at the right offsets."""
    journal = Journal(str(tmp_path))
    journal.open()
    journal.append([_add(1)])
    real_file = journal._file

    class HalfWrite:
        def write(self, data: bytes) -> int:
            real_file.write(data[: len(data) // 2])
            real_file.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str):
            return getattr(real_file, name)

    journal._file = HalfWrite()
    try:
        journal.append([_add(2)])
    except OSError:
        pass
    else:
        raise AssertionError("the failed write was not reported")
    journal.append([_add(3)])
    assert journal.read_batch(10)[0] == [_add(1), _add(3)]
    assert journal.pending == 2
    journal.close()


class _GatedFsync:
    """An fsync that counts its calls and, while `gated`, waits for `release` (bounded)."""

    def __init__(self, fail: bool = False) -> None:
        import threading

        self.calls = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.gated = True
        self.fail = fail

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.started.release()
        if self.gated and not self.release.acquire(timeout=10):
            raise AssertionError("fsync was never released")
        if self.fail:
            raise OSError(5, "Input/output error")
        os.fsync(fd)


def _appender(journal: Journal, change: dict, outcome: dict):
    """A thread appending `change`; `outcome[hash]` is "ok" or the OSError once it returns."""
    import threading

    def run() -> None:
        try:
            journal.append([change])
            outcome[change["hash"]] = "ok"
        except OSError as exc:
            outcome[change["hash"]] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_written(journal: Journal, lines: int) -> None:
    """Until `lines` changes are written (not necessarily fsynced), at most 10 s."""
    import time

    for _ in range(1000):
        if journal.pending >= lines:
            return
        time.sleep(0.01)
    raise AssertionError("the appends never wrote their lines")


def test_concurrent_appends_share_one_fsync_and_none_returns_before_it(tmp_path) -> None:
    """Appends written while an fsync runs wait for the next one, which covers them all:
    three appends, two fsyncs, and no append returns before the fsync covering it ends."""
    fsync = _GatedFsync()
    journal = Journal(str(tmp_path), fsync=fsync)
    journal.open()
    outcome: dict = {}
    first = _appender(journal, _add(1), outcome)
    assert fsync.started.acquire(timeout=10)       # the first append's fsync runs...
    others = [_appender(journal, _add(n), outcome) for n in (2, 3)]
    _wait_written(journal, 3)                      # ...while two more are written
    assert outcome == {}
    fsync.release.release()                        # the first fsync ends
    first.join(10)
    assert outcome == {_add(1)["hash"]: "ok"}
    assert fsync.started.acquire(timeout=10)       # one more fsync, for both others
    assert all(thread.is_alive() for thread in others) and len(outcome) == 1
    fsync.release.release()
    for thread in others:
        thread.join(10)
    assert set(outcome.values()) == {"ok"} and len(outcome) == 3
    assert fsync.calls == 2 == journal.fsyncs
    assert journal.read_batch(10)[0] == [_add(1), _add(2), _add(3)]


def test_a_failed_fsync_fails_every_append_it_covered(tmp_path) -> None:
    """Two appends covered by one fsync that fails both fail; a later fsync is not taken
    as covering them, an earlier, synced append stays good, and a later append with a
    working disk succeeds."""
    fsync = _GatedFsync()
    fsync.gated = False
    journal = Journal(str(tmp_path), fsync=fsync)
    journal.open()
    _, durable = journal.write([_add(0)])
    journal.sync(durable)
    fsync.fail = True
    _, first = journal.write([_add(1)])
    _, second = journal.write([_add(2)])
    for mark in (first, second):
        try:
            journal.sync(mark)
        except OSError:
            continue
        raise AssertionError("an append covered by the failed fsync was acknowledged")
    assert fsync.calls == 2
    journal.sync(durable)  # synced before the failure: still fine
    fsync.fail = False
    journal.append([_add(3)])
    assert fsync.calls == 3
    try:
        journal.sync(second)
    except OSError:
        pass
    else:
        raise AssertionError("the failed append was acknowledged by a later fsync")


def test_publisher_acknowledges_and_reads_the_next_batch_in_one_trip(tmp_path, clock) -> None:
    """Draining N batches takes N + 1 trips to the thread pool (ack and next read
    together), not 2N."""
    from tests.store.harness import direct

    journal = Journal(str(tmp_path))
    journal.open()
    journal.append([_add(n) for n in range(7)])
    trips = []

    def counting(function, *args, **kwargs):
        trips.append(function)
        return direct(function, *args, **kwargs)

    master = FakeMaster()
    publisher = InventoryPublisher(journal, master, "store1", clock=clock, batch_size=3,
                                   run_blocking=counting)
    publisher.startService()
    assert [len(batch) for _, batch in master.batches] == [3, 3, 1]
    assert len(trips) == 4 and journal.pending == 0
    publisher.stopService()


def test_a_put_links_and_journals_in_one_trip(tmp_path, clock) -> None:
    """A verified PUT takes two trips to the thread pool: hashing and writing the
    body, then fsync + link + journal append together."""
    from twisted.internet.defer import Deferred
    from twisted.internet.testing import StringTransport

    from tests.store.harness import direct

    master = FakeMaster()
    service = build(tmp_path, clock, master=master)
    content = service.content
    trips = []

    def counting(function, *args, **kwargs):
        trips.append(function)
        return direct(function, *args, **kwargs)

    data = b"one trip"
    content.receiver._run = content._run_blocking = counting
    upload = content.receiver.open(sha1_of(data), "bin", len(data), StringTransport())
    upload.write(data)
    commit = Deferred.fromCoroutine(content.commit(upload))
    assert commit.called and len(trips) == 2
    assert master.changes() == [{"op": "add", "hash": sha1_of(data), "ext": "bin",
                                 "size": len(data)}]
    stop(service)


def test_changes_during_the_publish_interval_go_together_after_it(tmp_path, clock) -> None:
    """After a publish, changes recorded within PUBLISH_EVERY_SECONDS are held (already
    journaled) and sent together in one publish once the interval has passed; a quiet
    store publishes at once."""
    from stretchfs.store.publisher import PUBLISH_EVERY_SECONDS

    journal = Journal(str(tmp_path))
    journal.open()
    master = FakeMaster()
    publisher = _publisher(journal, master, clock, batch_size=100)
    publisher.record([_add(1)])
    assert [batch for _, batch in master.batches] == [[_add(1)]]  # quiet: at once
    publisher.record([_add(2)])
    publisher.record([_add(3)])
    assert len(master.batches) == 1 and publisher.backlog == 2
    clock.advance(PUBLISH_EVERY_SECONDS / 2)
    assert len(master.batches) == 1
    clock.advance(PUBLISH_EVERY_SECONDS / 2)
    assert [batch for _, batch in master.batches] == [[_add(1)], [_add(2), _add(3)]]
    assert publisher.backlog == 0
    clock.advance(PUBLISH_EVERY_SECONDS * 10)
    publisher.record([_add(4)])
    assert master.batches[-1][1] == [_add(4)]  # quiet again: at once
    publisher.record([_add(5)])
    publisher.stopService()
    assert clock.getDelayedCalls() == []


def test_a_wall_clock_stepped_back_does_not_hold_publishing(tmp_path, clock) -> None:
    """The reactor's clock is the wall clock: after it steps back an hour, a change
    recorded right after a publish still goes out within PUBLISH_EVERY_SECONDS."""
    from stretchfs.store.publisher import PUBLISH_EVERY_SECONDS

    journal = Journal(str(tmp_path))
    journal.open()
    master = FakeMaster()
    publisher = _publisher(journal, master, clock, batch_size=100)
    clock.advance(10_000)
    publisher.record([_add(1)])
    assert len(master.batches) == 1
    clock.rightNow -= 3600  # an NTP step backwards
    publisher.record([_add(2)])
    clock.advance(PUBLISH_EVERY_SECONDS)
    assert [batch for _, batch in master.batches] == [[_add(1)], [_add(2)]]
    publisher.stopService()
    assert clock.getDelayedCalls() == []


def test_a_failed_fsync_fails_appends_written_while_it_ran(tmp_path) -> None:
    """Lines written while an fsync runs may be among the pages it failed to write back
    (and the kernel then counts them clean): when it fails, their appends fail too and
    a later successful fsync does not acknowledge them."""
    fsync = _GatedFsync(fail=True)
    journal = Journal(str(tmp_path), fsync=fsync)
    journal.open()
    outcome: dict = {}
    first = _appender(journal, _add(1), outcome)
    assert fsync.started.acquire(timeout=10)       # the first append's fsync runs...
    _, during = journal.write([_add(2)])           # ...while a second line is written
    fsync.release.release()
    first.join(10)
    assert isinstance(outcome[_add(1)["hash"]], OSError)
    fsync.fail, fsync.gated = False, False
    try:
        journal.sync(during)
    except OSError:
        pass
    else:
        raise AssertionError("a line written during the failed fsync was acknowledged")
    journal.append([_add(3)])                      # written after it: fine
    assert fsync.calls == 2
