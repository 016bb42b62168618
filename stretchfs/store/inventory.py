"""Inventory sync: make the master's view of this store match its disk.

1. Stream what the master believes this store holds
   (`GET /inventory/store/<name>`) into a compact dict: 20-byte digest ->
   one int packing size and extension (about 120 bytes per row).
2. Walk the content folder (os.scandir, constant memory) in a thread; each
   file found is popped from the dict, and published as added when the
   master did not know it (or knew another size or extension).
3. What is left in the dict is on the master but not on disk: removed.

Differences go to a sink: the store's journal (then the publisher sends
them in batches) or, for `stretchfs inventory sync`, a spool file.
Hashes changed by a PUT or remove while a sync runs are skipped: their
own journal entries already tell the truth.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from stretchfs.errors import NotReady
from stretchfs.periodic import PeriodicService
from stretchfs.store.journal import Journal
from stretchfs.store.layout import ContentStore
from stretchfs.store.stats import StoreStats
from stretchfs.threads import RunBlocking
from stretchfs.wire.identifiers import EXT_RE, SHA1_RE
from stretchfs.wire.protocols import InventorySink

log = Logger()

PROGRESS_EVERY_FILES = 100_000
SINK_BUFFER_CHANGES = 5000
RETRY_AFTER_FAILURE_SECONDS = 30.0
# A sync compares the disk with the master's view, which lags by the journal's
# backlog: let the publisher replay that first (bounded, so a master that stays
# away or a store that never idles still gets its sync).
BACKLOG_WAIT_SECONDS = 1.0
BACKLOG_WAITS_MAX = 60
EXT_BITS = 12


class KnownInventory:
    """What the master believes: digest -> packed (size, extension)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, int | tuple[str, int]] = {}
        self._ext_ids: dict[str, int] = {}
        self._exts: list[str] = []
        self.invalid = 0

    def pack(self, ext: str, size: int) -> int | tuple[str, int]:
        """One int for (ext, size); past 4096 distinct extensions, the pair itself."""
        ext_id = self._ext_ids.get(ext)
        if ext_id is None:
            ext_id = len(self._exts)
            if ext_id >= 1 << EXT_BITS:
                return ext, size
            self._ext_ids[ext] = ext_id
            self._exts.append(ext)
        return (size << EXT_BITS) | ext_id

    def add_row(self, row: Any) -> None:
        """Take one `{"hash", "ext", "size"}` row of the master's stream."""
        try:
            sha1, ext, size = row["hash"], row["ext"], row["size"]
            if not (SHA1_RE.match(sha1) and EXT_RE.match(ext)) or int(size) < 0:
                raise ValueError(sha1)
        except (TypeError, KeyError, ValueError):
            self.invalid += 1
            return
        self.rows[bytes.fromhex(sha1)] = self.pack(ext, int(size))

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SyncReport:
    """What one sync found."""

    known: int = 0
    files: int = 0
    bytes: int = 0
    added: int = 0
    removed: int = 0
    invalid: int = 0
    seconds: float = 0.0


class JournalSink:
    """Sends differences into the store's journal, skipping hashes touched meanwhile."""

    def __init__(self, journal: Journal, touched: Collection[str]) -> None:
        self._journal = journal
        self._touched = touched
        self._buffer: list[dict[str, Any]] = []
        self.written = 0

    def add(self, sha1: str, ext: str, size: int) -> None:
        """One file the master did not know."""
        self._buffer.append({"op": "add", "hash": sha1, "ext": ext, "size": size})
        if len(self._buffer) >= SINK_BUFFER_CHANGES:
            self._flush(fsync=False)

    def remove(self, sha1: str) -> None:
        """One file the master knew that is not on disk."""
        self._buffer.append({"op": "remove", "hash": sha1})
        if len(self._buffer) >= SINK_BUFFER_CHANGES:
            self._flush(fsync=False)

    def close(self) -> None:
        """Write what is buffered and fsync."""
        self._flush(fsync=True)

    def _flush(self, fsync: bool) -> None:
        self.written += self._journal.append(self._buffer, fsync=fsync, skip=self._touched)
        self._buffer = []


class SpoolSink:
    """Writes differences to an NDJSON file (for the command-line sync)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "wb", buffering=1024 * 1024)
        self.count = 0

    def add(self, sha1: str, ext: str, size: int) -> None:
        """One file the master did not know."""
        self._write({"op": "add", "hash": sha1, "ext": ext, "size": size})

    def remove(self, sha1: str) -> None:
        """One file the master knew that is not on disk."""
        self._write({"op": "remove", "hash": sha1})

    def _write(self, change: dict[str, Any]) -> None:
        self.count += 1
        self._file.write(json.dumps(change, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        """Flush and close."""
        self._file.close()

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """Read the spool back in lists of at most `size` changes."""
        batch: list[dict[str, Any]] = []
        with open(self.path, "rb") as handle:
            for line in handle:
                batch.append(json.loads(line))
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch


def diff_inventory(store: ContentStore, known: KnownInventory, sink: JournalSink | SpoolSink,
                   progress: Callable[[SyncReport], None] | None = None,
                   every: int = PROGRESS_EVERY_FILES) -> SyncReport:
    """Walk the disk against `known`, feeding differences to `sink` (blocking).

    `progress(report)` is called every `every` files, from the scanning thread.
    """
    if not os.path.isdir(store.content_dir):
        # An unmounted disk looks like an empty store: never publish that as
        # "every file removed".
        raise NotReady("content folder {} is missing: is the disk mounted?".format(
            store.content_dir))
    report = SyncReport(known=len(known))
    rows = known.rows
    for item in store.scan():
        if item is None:
            report.invalid += 1
            continue
        sha1, ext, size = item
        report.files += 1
        report.bytes += size
        if rows.pop(bytes.fromhex(sha1), None) != known.pack(ext, size):
            sink.add(sha1, ext, size)
            report.added += 1
        if progress is not None and report.files % every == 0:
            progress(report)
    for digest in rows:
        sink.remove(digest.hex())
        report.removed += 1
    rows.clear()
    sink.close()
    return report


async def fetch_known(master: InventorySink, store_name: str) -> KnownInventory:
    """Stream the master's view of `store_name` into a `KnownInventory`."""
    known = KnownInventory()
    await master.store_inventory(store_name, known.add_row)
    if known.invalid:
        log.warn("master sent {count} malformed inventory rows for {store}",
                 count=known.invalid, store=store_name)
    return known


@dataclass
class SyncGuard:
    """The hashes a sync must leave alone: those whose disk change and journal
    entry are in flight when it starts, and those changed while it runs
    (their own journal entries win; a sync's view of them may be stale)."""

    active: bool = False
    touched: set[str] = field(default_factory=set)
    in_flight: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def changing(self, sha1: str) -> Iterator[None]:
        """Around a disk change of `sha1` and its journal append."""
        self.in_flight[sha1] = self.in_flight.get(sha1, 0) + 1
        if self.active:
            self.touched.add(sha1)
        try:
            yield
        finally:
            left = self.in_flight[sha1] - 1
            if left:
                self.in_flight[sha1] = left
            else:
                del self.in_flight[sha1]

    def start(self) -> None:
        """A sync begins: what is in flight now is already touched."""
        self.touched = set(self.in_flight)
        self.active = True


class InventorySyncService(PeriodicService):
    """Runs a sync at start-up and every `interval` seconds (retries sooner on failure)."""

    def __init__(self, store: ContentStore, journal: Journal, master: InventorySink,
                 store_name: str, *,
                 clock: IReactorTime, interval: float, run_blocking: RunBlocking,
                 stats: StoreStats, guard: SyncGuard, on_synced: Callable[[], None],
                 call_from_thread: Callable[..., object] | None = None) -> None:
        super().__init__(clock, interval)
        self._store = store
        self._journal = journal
        self._master = master
        self._store_name = store_name
        self._run_blocking = run_blocking
        self._stats = stats
        self._guard = guard
        self._on_synced = on_synced
        self._call_from_thread = call_from_thread or _call_now
        self._retry_call: IDelayedCall | None = None
        self._backlog_waits = 0
        self._running_sync: Deferred[SyncReport | None] | None = None
        self.last_report: SyncReport | None = None

    def stopService(self) -> None:
        """Stop the schedule (a scan already in its thread finishes on its own)."""
        super().stopService()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    def run_once(self) -> None:
        """Start a sync (the schedule does not wait for it)."""
        self.sync_now()

    def sync_now(self) -> Deferred[SyncReport | None]:
        """Start a sync unless one runs; fires with its report (None on failure)."""
        if self._running_sync is not None:
            return self._running_sync
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()  # this sync replaces a scheduled retry
        self._retry_call = None
        d = ensureDeferred(self._sync())

        def done(result: object) -> object:
            self._running_sync = None
            return result

        self._running_sync = d
        d.addBoth(done)
        return d

    async def _sync(self) -> SyncReport | None:
        if self._journal.pending and self._backlog_waits < BACKLOG_WAITS_MAX:
            self._backlog_waits += 1
            if self.running:
                self._retry_call = self._clock.callLater(BACKLOG_WAIT_SECONDS, self.sync_now)
            return None
        self._backlog_waits = 0
        start = self._clock.seconds()
        self._guard.start()
        try:
            log.info("inventory sync of {store}: downloading the master's view",
                     store=self._store_name)
            known = await fetch_known(self._master, self._store_name)
            log.info("inventory sync: master lists {count} files; scanning the disk",
                     count=len(known))
            sink = JournalSink(self._journal, self._guard.touched)
            report = await self._run_blocking(diff_inventory, self._store, known, sink,
                                              self._progress)
        except Exception as exc:
            log.warn("inventory sync of {store} failed: {error}; retry in {delay} s",
                     store=self._store_name, error=str(exc) or exc.__class__.__name__,
                     delay=RETRY_AFTER_FAILURE_SECONDS)
            if self.running:
                self._retry_call = self._clock.callLater(RETRY_AFTER_FAILURE_SECONDS,
                                                         self.sync_now)
            return None
        finally:
            self._guard.active = False
        report.seconds = self._clock.seconds() - start
        self.last_report = report
        self._stats.files = report.files
        self._stats.last_sync = self._clock.seconds()
        log.info("inventory sync done: {files} files, {added} added, {removed} removed, "
                 "{invalid} skipped, {seconds:.1f} s", files=report.files, added=report.added,
                 removed=report.removed, invalid=report.invalid, seconds=report.seconds,
                 event="inventory_synced")
        self._on_synced()
        return report

    def _progress(self, report: SyncReport) -> None:
        """Log progress on the reactor thread (called from the scanning thread)."""
        self._call_from_thread(_log_progress, report.files, report.added)


def _call_now(function: Callable[..., object], *args: object) -> None:
    function(*args)


def _log_progress(files: int, added: int) -> None:
    log.info("inventory sync: {files} files scanned, {added} to add so far",
             files=files, added=added, event="inventory_progress")
