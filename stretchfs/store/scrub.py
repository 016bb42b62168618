"""Scrub: re-read and re-hash a store's files in the background to find bit rot.

A pass walks `content/` in name order, hashing each file in chunks through
`run_blocking` and sleeping on the clock after each chunk so the pass runs
at `[scrub] rate` bytes per second (each file costs at least
`MIN_FILE_COST_BYTES`, which bounds the files per second of small files).
A new pass starts at most once per `[scrub] period`: a pass takes the
longer of the two (a changed period applies to the next pass at once).
Progress (the last name scrubbed) is kept in `<root>/scrub.json`, so a
restarted store resumes where it stopped.

A file whose bytes no longer hash to its name is moved to
`<root>/quarantine/` and its removal published through
`ContentService.quarantine` (the journal and publisher of every remove):
it is never served again and the master's repair planner restores a good
copy from another store.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from stretchfs.store.layout import HEX2_RE, NAME_RE, ContentStore
from stretchfs.store.stats import StoreStats
from stretchfs.threads import RunBlocking

log = Logger()

CHUNK_BYTES = 1024 * 1024
MIN_FILE_COST_BYTES = 256 * 1024
BATCH_FILES = 256
SAVE_EVERY_SECONDS = 10.0
STATE_NAME = "scrub.json"
QUARANTINE_NAME = "quarantine"


@dataclass
class ScrubState:
    """Where the scrub is: `cursor` is the last name scrubbed in the pass that
    started at `started` (None between passes), which has so far read `files`
    files and `bytes` bytes and found `corrupt`; `previous` is when the last
    finished pass started (the next one is due a period later)."""

    cursor: str = ""
    started: float | None = None
    previous: float | None = None
    files: int = 0
    bytes: int = 0
    corrupt: int = 0


def load_state(path: str) -> ScrubState:
    """The state saved at `path` (a fresh one when absent or unreadable)."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
        started, previous = raw["started"], raw["previous"]
        return ScrubState(str(raw["cursor"]), None if started is None else float(started),
                          None if previous is None else float(previous), int(raw["files"]),
                          int(raw["bytes"]), int(raw["corrupt"]))
    except FileNotFoundError:
        return ScrubState()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warn("scrub state {path} unreadable ({error}): starting a new pass",
                 path=path, error=str(exc))
        return ScrubState()


def save_state(path: str, state: ScrubState) -> None:
    """Write `state` to `path` atomically (temp file + rename)."""
    temp = path + ".tmp"
    with open(temp, "w") as handle:
        json.dump(asdict(state), handle)
    os.replace(temp, path)


def files_after(content_dir: str, after: str, limit: int) -> list[tuple[str, str]] | None:
    """Up to `limit` content files named after `after`, in name order, as (name,
    path); None when `content_dir` is missing (an unmounted disk)."""
    if not os.path.isdir(content_dir):
        return None
    found: list[tuple[str, str]] = []
    for first in _subdirs(content_dir, after[:2]):
        for second in _subdirs(os.path.join(content_dir, first),
                               after[2:4] if first == after[:2] else ""):
            folder = os.path.join(content_dir, first, second)
            try:
                names = sorted(n for n in os.listdir(folder)
                               if n > after and NAME_RE.match(n) and n.startswith(first + second))
            except FileNotFoundError:
                continue
            found += [(name, os.path.join(folder, name)) for name in names[:limit - len(found)]]
            if len(found) >= limit:
                return found
    return found


def _subdirs(folder: str, start: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n >= start and HEX2_RE.match(n))


class _Reader:
    """Hashes one open file chunk by chunk (each `step` runs off the reactor)."""

    def __init__(self, path: str) -> None:
        self.handle = open(path, "rb")
        info = os.fstat(self.handle.fileno())
        self.identity = (info.st_dev, info.st_ino)
        self.hasher = hashlib.sha1()
        self.size = 0
        self.done = False

    @classmethod
    def start(cls, path: str) -> _Reader:
        """Open `path` and hash its first chunk (one thread hop for a small file)."""
        reader = cls(path)
        reader.step()
        return reader

    def step(self) -> int:
        """Read and hash the next chunk; its length (the file is closed after the last)."""
        chunk = self.handle.read(CHUNK_BYTES)
        self.hasher.update(chunk)
        self.size += len(chunk)
        self.done = len(chunk) < CHUNK_BYTES
        if self.done:
            self.handle.close()
        return len(chunk)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self.handle.close()


def quarantine_file(store: ContentStore, path: str, identity: tuple[int, int]) -> bool:
    """Move the file at `path` into `<root>/quarantine/` if it is still the one
    scrubbed (same device and inode); whether it moved."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if (info.st_dev, info.st_ino) != identity:
        return False
    folder = os.path.join(store.root, QUARANTINE_NAME)
    os.makedirs(folder, exist_ok=True)
    os.replace(path, os.path.join(folder, os.path.basename(path)))
    for changed in (folder, os.path.dirname(path)):
        fd = os.open(changed, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


Quarantine = Callable[[str, Callable[[], bool]], Awaitable[bool]]


class ScrubService(Service):
    """Re-hashes every content file of a store, pass after pass, at a bounded rate."""

    def __init__(self, store: ContentStore, quarantine: Quarantine, *, clock: IReactorTime,
                 run_blocking: RunBlocking, rate: int, period: float, stats: StoreStats,
                 ready: Callable[[], bool]) -> None:
        self._store = store
        self._ready = ready
        self._quarantine = quarantine
        self._clock = clock
        self._run_blocking = run_blocking
        self._rate = rate
        self._period = period
        self._stats = stats
        self._state_path = os.path.join(store.root, STATE_NAME)
        self._state = ScrubState()
        self._dirty = False
        self._saved_at = 0.0
        self._task: Deferred[None] | None = None

    def startService(self) -> None:
        """Start scrubbing (nothing when `rate` is 0)."""
        super().startService()
        if self._rate > 0:
            self._task = ensureDeferred(self._run())
            self._task.addErrback(lambda f: f.trap(CancelledError))

    def stopService(self) -> Deferred[None]:
        """Stop scrubbing and save where it stopped."""
        super().stopService()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            if self._dirty:
                self._save()
        return succeed(None)

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self._clock, max(0.0, seconds), lambda: None)

    async def _run(self) -> None:
        self._state = await self._run_blocking(load_state, self._state_path)
        self._saved_at = self._clock.seconds()
        while True:
            try:
                await self._step()
            except CancelledError:
                raise
            except Exception:
                log.failure("while scrubbing {root}", root=self._store.root)
                await self._sleep(SAVE_EVERY_SECONDS)

    async def _step(self) -> None:
        """Start a pass when due, else scrub the next batch of files (none while
        the store is not ready: its root unprepared, locked or unmounted)."""
        if not self._ready():
            await self._sleep(SAVE_EVERY_SECONDS)
            return
        state = self._state
        if state.started is None:
            now = self._clock.seconds()
            due = now if state.previous is None else state.previous + self._period
            await self._sleep(due - now)
            self._state = state = ScrubState(started=self._clock.seconds(),
                                             previous=state.previous)
        batch = await self._run_blocking(files_after, self._store.content_dir, state.cursor,
                                         BATCH_FILES)
        if batch is None:  # content/ is gone (unmounted): try again later
            await self._sleep(SAVE_EVERY_SECONDS)
            return
        for name, path in batch:
            await self._scrub(name, path)
            state.cursor, self._dirty = name, True
            if self._clock.seconds() - self._saved_at >= SAVE_EVERY_SECONDS:
                await self._run_blocking(self._save)
        if len(batch) < BATCH_FILES:
            log.info("scrub pass of {root} finished: {files} files, {bytes} bytes, {corrupt} "
                     "corrupt", root=self._store.root, files=state.files, bytes=state.bytes,
                     corrupt=state.corrupt, event="scrub_pass")
            self._state = ScrubState(previous=state.started)
            await self._run_blocking(self._save)

    async def _scrub(self, name: str, path: str) -> None:
        """Hash one file at the rate; quarantine it when its bytes do not match its name.

        Each chunk is followed by a sleep of its bytes / rate; the last one
        also pays what the file lacks of MIN_FILE_COST_BYTES.
        """
        reader: _Reader | None = None
        try:
            reader = await self._run_blocking(_Reader.start, path)
            read = reader.size
            while not reader.done:
                self._count(read)
                await self._sleep(read / self._rate)
                read = await self._run_blocking(reader.step)
        except FileNotFoundError:  # removed since it was listed
            return
        except OSError as exc:  # an unreadable sector: skipped, the pass goes on
            log.error("scrub could not read {name}: {error}", name=name, error=str(exc),
                      event="scrub_unreadable")
            return
        finally:
            if reader is not None:
                reader.close()
        self._count(read)
        await self._sleep(max(read, MIN_FILE_COST_BYTES - (reader.size - read)) / self._rate)
        self._state.files += 1
        self._stats.scrubbed_files += 1
        sha1 = name.split(".", 1)[0]
        digest = reader.hasher.hexdigest()
        if digest == sha1:
            return
        moved = await self._quarantine(
            sha1, lambda: quarantine_file(self._store, path, reader.identity))
        if moved:
            self._state.corrupt += 1
            self._stats.corrupt_found += 1
            log.error("scrub found {name} corrupt (its bytes hash to {digest}): quarantined "
                      "and unpublished", name=name, digest=digest, event="scrub_corrupt")

    def _count(self, read: int) -> None:
        self._state.bytes += read
        self._stats.scrubbed_bytes += read

    def _save(self) -> None:
        save_state(self._state_path, self._state)
        self._dirty = False
        self._saved_at = self._clock.seconds()

