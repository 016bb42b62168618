"""Scrub: background re-hashing finds bit rot, quarantines it and unpublishes it."""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from stretchfs.store.layout import ContentStore
from stretchfs.store.scrub import (
    CHUNK_BYTES,
    MIN_FILE_COST_BYTES,
    STATE_NAME,
    ScrubService,
    files_after,
    quarantine_file,
)
from stretchfs.store.stats import StoreStats
from tests.store.harness import AUTH, FakeMaster, build, direct, request, sha1_of, stop, stub_for

SCRUB = "[scrub]\nrate = 1048576\nperiod = 100\n"


def _flip_byte(path: str, offset: int = 10) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _scrubber(service):
    return next(child for child in service if isinstance(child, ScrubService))


def _put(stub, data: bytes, ext: str = "bin") -> str:
    sha1 = sha1_of(data)
    code, _, _ = request(stub, "PUT", "/content/put/{}.{}".format(sha1, ext), data=data,
                         headers=AUTH)
    assert code == 201
    return sha1


def _download(stub, sha1: str) -> int:
    return request(stub, "POST", "/content/download", data=json.dumps({"hash": sha1}).encode(),
                   headers=AUTH)[0]


def _write(store: ContentStore, data: bytes, ext: str = "bin") -> str:
    sha1 = sha1_of(data)
    os.makedirs(store.folder_for(sha1), exist_ok=True)
    with open(store.path_for(sha1, ext), "wb") as handle:
        handle.write(data)
    return sha1


def _advance(clock: Clock, seconds: float, step: float = 0.05) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_a_corrupt_file_is_quarantined_unpublished_and_no_longer_served(tmp_path) -> None:
    """A file with a flipped byte is moved to quarantine/, its removal is published and
    its download answers 404; a clean file stays, served and published as before."""
    clock = Clock()
    master = FakeMaster()
    service = build(tmp_path, clock, master=master, extra=SCRUB)
    stub = stub_for(service)
    bad, good = _put(stub, b"rotting bytes" * 1000), _put(stub, b"healthy bytes" * 1000)
    bad_path = service.content.store.find(bad).path
    _flip_byte(bad_path)
    with capturedLogs() as events:
        _advance(clock, 2.0)
    stats = service.content.stats
    assert stats.scrubbed_files == 2 and stats.corrupt_found == 1
    assert stats.scrubbed_bytes == 2 * 13000
    assert not os.path.exists(bad_path)
    assert os.path.exists(os.path.join(service.content.store.root, "quarantine",
                                       os.path.basename(bad_path)))
    assert _download(stub, bad) == 404 and _download(stub, good) == 200
    removes = [c for c in master.changes() if c["op"] == "remove"]
    assert removes == [{"op": "remove", "hash": bad}]
    corrupt = [e for e in events if e.get("event") == "scrub_corrupt"]
    assert len(corrupt) == 1 and corrupt[0]["name"] == os.path.basename(bad_path)
    passes = [e for e in events if e.get("event") == "scrub_pass"]
    assert [(e["files"], e["corrupt"]) for e in passes] == [(2, 1)]
    code, _, body = request(stub, "GET", "/metrics")
    assert code == 200 and b"stretchfs_store_corrupt_found_total 1.0" in body
    stop(service)
    assert clock.getDelayedCalls() == []


def test_the_rate_bounds_the_bytes_read_in_simulated_time(tmp_path) -> None:
    """At 1 MiB/s the scrub never reads more than rate x elapsed + one chunk, and
    reads the whole disk in about bytes / rate seconds."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    for index in range(3):
        _write(store, bytes([index]) * CHUNK_BYTES)
    stats = StoreStats()
    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct,
                         rate=CHUNK_BYTES, period=1000.0, stats=stats,
                         ready=_ready)
    scrub.startService()
    for _ in range(40):
        clock.advance(0.1)
        assert stats.scrubbed_bytes <= CHUNK_BYTES * clock.seconds() + CHUNK_BYTES
    assert stats.scrubbed_bytes == 3 * CHUNK_BYTES and stats.scrubbed_files == 3
    scrub.stopService()
    assert clock.getDelayedCalls() == []


def test_small_files_cost_a_minimum_each(tmp_path) -> None:
    """Tiny files are charged MIN_FILE_COST_BYTES each, bounding files per second."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    for index in range(20):
        _write(store, b"tiny %d" % index)
    stats = StoreStats()
    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct,
                         rate=MIN_FILE_COST_BYTES, period=1000.0, stats=stats,
                         ready=_ready)
    scrub.startService()
    _advance(clock, 5.0)
    assert 4 <= stats.scrubbed_files <= 6
    scrub.stopService()


def test_a_restarted_scrub_resumes_where_it_stopped(tmp_path) -> None:
    """After a stop mid-pass, a new scrub on the same root reads only the files the
    first did not, then finishes the pass and waits for the period."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    names = sorted(_write(store, b"file %d" % index) for index in range(6))
    first = StoreStats()
    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct,
                         rate=MIN_FILE_COST_BYTES, period=1000.0, stats=first,
                         ready=_ready)
    scrub.startService()
    _advance(clock, 2.5)
    scrub.stopService()
    assert clock.getDelayedCalls() == []
    with open(os.path.join(store.root, STATE_NAME)) as handle:
        saved = json.load(handle)
    assert saved["cursor"] == names[first.scrubbed_files - 1] + ".bin"
    second = StoreStats()
    again = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct,
                         rate=MIN_FILE_COST_BYTES, period=1000.0, stats=second,
                         ready=_ready)
    with capturedLogs() as events:
        again.startService()
        _advance(clock, 10.0)
    assert first.scrubbed_files == 2 and second.scrubbed_files == 4
    passes = [e for e in events if e.get("event") == "scrub_pass"]
    assert [e["files"] for e in passes] == [6]
    _advance(clock, 900.0, step=10.0)
    assert second.scrubbed_files == 4
    _advance(clock, 200.0, step=0.5)
    assert second.scrubbed_files == 10
    again.stopService()


def test_files_after_lists_names_in_order_from_a_cursor(tmp_path) -> None:
    """files_after walks content/ in name order from just after the cursor, in batches,
    and answers None when content/ is missing."""
    store = ContentStore(str(tmp_path))
    assert files_after(store.content_dir, "", 10) is None
    store.prepare()
    names = sorted(_write(store, b"n%d" % index) + ".bin" for index in range(30))
    assert [name for name, _ in files_after(store.content_dir, "", 100)] == names
    batch = files_after(store.content_dir, names[9], 7)
    assert [name for name, _ in batch] == names[10:17]
    assert batch[0][1] == store.path_for(names[10][:40], "bin")
    assert files_after(store.content_dir, names[-1], 10) == []


def test_a_zero_rate_turns_the_scrub_off(tmp_path) -> None:
    """With rate 0 nothing is read and no timer is scheduled."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    _write(store, b"data")
    stats = StoreStats()
    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct, rate=0,
                         period=1.0, stats=stats,
                         ready=_ready)
    scrub.startService()
    assert clock.getDelayedCalls() == [] and stats.scrubbed_files == 0
    scrub.stopService()


def test_quarantine_leaves_a_file_replaced_since_it_was_read(tmp_path) -> None:
    """quarantine_file moves only the file that was read (same inode), not a new one."""
    store = ContentStore(str(tmp_path))
    store.prepare()
    sha1 = _write(store, b"original")
    path = store.path_for(sha1, "bin")
    read = os.stat(path)
    os.rename(path, os.path.join(store.tmp_dir, "kept"))  # keeps its inode in use
    _write(store, b"original")
    assert not quarantine_file(store, path, (read.st_dev, read.st_ino))
    assert os.path.exists(path)
    now = os.stat(path)
    assert quarantine_file(store, path, (now.st_dev, now.st_ino))
    assert not os.path.exists(path)
    assert os.path.exists(os.path.join(store.root, "quarantine", sha1 + ".bin"))
    assert not quarantine_file(store, path, (now.st_dev, now.st_ino))


def test_nothing_is_read_while_the_store_is_not_ready(tmp_path) -> None:
    """While the store is not ready (root locked, unmounted) the scrub reads nothing and
    writes no state; once ready it scrubs."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    _write(store, b"data")
    ready = [False]
    stats = StoreStats()
    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=direct,
                         rate=MIN_FILE_COST_BYTES, period=1000.0, stats=stats,
                         ready=lambda: ready[0])
    scrub.startService()
    _advance(clock, 30.0, step=1.0)
    assert stats.scrubbed_files == 0
    assert not os.path.exists(os.path.join(store.root, STATE_NAME))
    ready[0] = True
    _advance(clock, 15.0, step=0.5)
    assert stats.scrubbed_files == 1
    scrub.stopService()
    assert clock.getDelayedCalls() == []


def _ready():
    return True


def _io_error():
    raise OSError(5, "Input/output error")


async def _no_quarantine(sha1, move):
    raise AssertionError("nothing here is corrupt")


def test_an_unreadable_file_is_logged_and_skipped(tmp_path, monkeypatch) -> None:
    """A read error on one file is logged and the pass goes on with the next files."""
    clock = Clock()
    store = ContentStore(str(tmp_path))
    store.prepare()
    names = sorted(_write(store, b"file %d" % index) + ".bin" for index in range(3))
    stats = StoreStats()

    def run_blocking(function, *args):
        if getattr(function, "__name__", "") == "start" and args[0].endswith(
                names[0]):
            return direct(_io_error)
        return direct(function, *args)

    scrub = ScrubService(store, _no_quarantine, clock=clock, run_blocking=run_blocking,
                         rate=MIN_FILE_COST_BYTES, period=1000.0, stats=stats,
                         ready=_ready)
    with capturedLogs() as events:
        scrub.startService()
        _advance(clock, 5.0)
    assert [e["name"] for e in events if e.get("event") == "scrub_unreadable"] == [names[0]]
    assert stats.scrubbed_files == 2
    scrub.stopService()
