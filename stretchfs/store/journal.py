"""The publish journal: every inventory change, on disk until the master has it.

`<root>/journal/changes.ndjson` holds one change per line, exactly as
`POST /inventory/publish` takes it (`{"op": "add", "hash", "ext", "size"}`
or `{"op": "remove", "hash"}`); `<root>/journal/acked` holds the byte offset
up to which the master has acknowledged.  Appends are fsynced before a PUT
or remove is answered, so a store restart loses nothing; replays after a
crash are harmless because publishing is idempotent on the master.  Once
everything is acknowledged and the file has grown, it is truncated.

Group commit: `append` writes its lines under the journal's lock, then waits
for an fsync that started after they were written.  One fsync runs at a
time, outside that lock; appends written meanwhile are covered together by
the next one, so N concurrent PUTs cost about two fsyncs, not N, and none
returns before its own lines are on disk.  A failed fsync fails every append
it was to cover or written while it ran (and no later fsync is taken as covering
them).

Every method takes the journal's lock, so the reactor thread and the
threadpool (fsync, inventory scans) may call it concurrently.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Collection, Iterable

from stretchfs.store.layout import fsync_dir

JOURNAL_NAME = "changes.ndjson"
ACKED_NAME = "acked"
COMPACT_BYTES = 4 * 1024 * 1024


class Journal:
    """An append-only, fsynced list of changes with an acknowledged offset."""

    def __init__(self, folder: str, compact_bytes: int = COMPACT_BYTES,
                 fsync: Callable[[int], None] = os.fsync) -> None:
        """A journal in `folder`, truncated once all is acknowledged and it holds at
        least `compact_bytes`; appends are made durable with `fsync(fd)`."""
        self.folder = folder
        self._compact_bytes = compact_bytes
        self._fsync = fsync
        self.path = os.path.join(folder, JOURNAL_NAME)
        self._acked_path = os.path.join(folder, ACKED_NAME)
        self._lock = threading.Lock()
        self._file: Any = None
        self._size = 0
        self._acked = 0
        self._pending = 0
        # Group commit, in bytes ever written (truncation does not reset them):
        self._sync_lock = threading.Lock()  # one fsync at a time
        self._written = 0                    # appended so far
        self._synced = 0                     # covered by a successful fsync
        self._failed: list[tuple[int, int]] = []  # (after, up to) a failed one covered
        self.fsyncs = 0                      # append fsyncs done (for tests and stats)

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> None:
        """Open (creating if needed); drop a torn last line a crash may have left."""
        with self._lock:
            os.makedirs(self.folder, exist_ok=True)
            created = not os.path.exists(self.path)
            self._file = open(self.path, "ab+")
            if created:
                fsync_dir(self.folder)
            size = self._file.seek(0, os.SEEK_END)
            if size:
                size = self._cut_torn_tail(size)
            self._size = size
            self._acked = min(self._read_acked(), size)
            self._pending = self._count_lines(self._acked)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _cut_torn_tail(self, size: int) -> int:
        start = max(0, size - 64 * 1024)
        while True:
            self._file.seek(start)
            tail = self._file.read(size - start)
            cut = tail.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            if start == 0:
                keep = 0
                break
            start = max(0, start - 1024 * 1024)
        if keep != size:
            self._file.truncate(keep)
            self._file.flush()
            os.fsync(self._file.fileno())
        return keep

    def _read_acked(self) -> int:
        try:
            with open(self._acked_path, "rb") as handle:
                return int(handle.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _count_lines(self, offset: int) -> int:
        count = 0
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                count += block.count(b"\n")
        return count

    # -- writing -----------------------------------------------------------
    def append(self, changes: Iterable[dict[str, Any]], fsync: bool = True,
               skip: Collection[str] = ()) -> int:
        """Append `changes` (except those whose hash is in `skip`) and, with `fsync`,
        return once they are on disk; how many were written.  OSError when the write
        or the fsync meant to cover it fails."""
        count, mark = self.write(changes, skip)
        if fsync:
            self.sync(mark)
        return count

    def write(self, changes: Iterable[dict[str, Any]],
              skip: Collection[str] = ()) -> tuple[int, int]:
        """Write `changes` (not durable yet): (lines written, the mark to `sync` to)."""
        with self._lock:
            if self._file is None:
                raise OSError("the publish journal in {} is not open".format(self.folder))
            lines = [json.dumps(c, separators=(",", ":")).encode("utf-8") + b"\n"
                     for c in changes if c["hash"] not in skip]
            if lines:
                data = b"".join(lines)
                try:
                    self._file.write(data)
                    self._file.flush()
                except OSError:
                    self._reopen_at(self._size)
                    raise
                self._size += len(data)
                self._written += len(data)
                self._pending += len(lines)
            return len(lines), self._written

    def sync(self, mark: int) -> None:
        """Return once everything written up to `mark` is on disk: at once when an
        fsync that started after it succeeded, else after one more (for everything
        written so far).  OSError when the fsync covering `mark` failed."""
        with self._sync_lock:
            if any(low < mark <= high for low, high in self._failed):
                raise OSError("fsync of the publish journal in {} failed".format(self.folder))
            if mark <= self._synced:
                return
            with self._lock:
                if self._file is None:
                    raise OSError("the publish journal in {} is not open".format(self.folder))
                target, fd = self._written, self._file.fileno()
            try:
                self._fsync(fd)
            except OSError:
                # It may have failed on pages written while it ran (then counted clean):
                # their appends fail too.
                with self._lock:
                    self._failed.append((self._synced, self._written))
                raise
            self.fsyncs += 1
            self._synced = max(self._synced, target)

    def _reopen_at(self, size: int) -> None:
        """After a failed write: drop whatever part of it reached the file."""
        try:
            self._file.close()
        except OSError:
            pass  # the unwritten buffer is exactly what must go
        self._file = None
        os.truncate(self.path, size)
        self._file = open(self.path, "ab+")

    # -- reading and acknowledging ----------------------------------------
    @property
    def pending(self) -> int:
        """Changes not yet acknowledged."""
        return self._pending

    @property
    def acked_offset(self) -> int:
        """The offset up to which the master has everything."""
        return self._acked

    def read_batch(self, max_items: int) -> tuple[list[dict[str, Any]], int]:
        """The next unacknowledged changes (at most `max_items`) and the offset after them."""
        with self._lock:
            changes: list[dict[str, Any]] = []
            offset = self._acked
            if self._file is None:
                return changes, offset
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                while len(changes) < max_items and offset < self._size:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    try:
                        changes.append(json.loads(line))
                    except ValueError:
                        continue
            return changes, offset

    def ack(self, offset: int, count: int) -> None:
        """The master has everything up to `offset` (`count` changes); compact when done."""
        with self._lock:
            self._acked = max(self._acked, min(offset, self._size))
            # Unreadable lines are skipped by read_batch but were counted: nothing
            # is pending once everything is acknowledged.
            self._pending = 0 if self._acked == self._size else max(0, self._pending - count)
            if self._acked == self._size and self._size >= self._compact_bytes:
                # The zero offset must be on disk before the truncation: a stale,
                # larger offset over a shorter new journal would count unpublished
                # changes as published.  (Replaying old changes is harmless.)
                self._write_acked(0, durable=True)
                self._file.truncate(0)
                self._file.flush()
                os.fsync(self._file.fileno())
                self._size = self._acked = self._pending = 0
                return
            self._write_acked(self._acked, durable=False)

    def _write_acked(self, offset: int, durable: bool) -> None:
        temp = self._acked_path + ".tmp"
        with open(temp, "wb") as handle:
            handle.write(b"%d\n" % offset)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, self._acked_path)
        if durable:
            fsync_dir(self.folder)
