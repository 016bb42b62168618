"""What a store does with content: commit verified uploads, remove, look up,
fetch from another store for repair, and watch its free space.

The HTTP handlers in `api.py` stay thin and call `ContentService`.
Blocking file work (fsync, rename, directory scans) goes through the
injected `run_blocking` (the reactor's threadpool in production, a direct
call in unit tests).
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Callable

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from twisted.python.failure import Failure

from stretchfs.errors import (
    InsufficientStorage,
    InvalidInput,
    NotFound,
    PeerUnavailable,
    UpstreamError,
)
from stretchfs.periodic import PeriodicService
from stretchfs.store.inventory import SyncGuard
from stretchfs.store.layout import ContentStore, StoredFile, check_ext, check_hash
from stretchfs.store.leaving import LeavingCopies
from stretchfs.store.publisher import InventoryPublisher
from stretchfs.store.stats import StoreStats
from stretchfs.store.upload import PutReceiver, PutUpload
from stretchfs.threads import RunBlocking
from stretchfs.wire.store import StoreClient

log = Logger()

DISK_CHECK_SECONDS = 10.0


class DiskMonitor(PeriodicService):
    """Knows whether the store is writable (free space >= `[store] min_free`)."""

    def __init__(self, store: ContentStore, min_free: int, clock: Any) -> None:
        super().__init__(clock, DISK_CHECK_SECONDS)
        self._store = store
        self._min_free = min_free
        self._listeners: list[Callable[[bool], None]] = []
        self.total = 0
        self.free = 0
        self.writable = True

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(writable)` whenever the writable flag flips."""
        self._listeners.append(callback)

    def check(self) -> bool:
        """Read the disk's free space now; returns `writable`."""
        try:
            usage = self._store.disk_usage()
        except OSError as exc:
            log.error("cannot read free space of {root}: {error}", root=self._store.root,
                      error=str(exc))
            return self.writable
        self.total, self.free = usage.total, usage.free
        writable = usage.free >= self._min_free
        if writable != self.writable:
            self.writable = writable
            log.warn("store {root} is now {state} ({free} bytes free, min_free {min_free})",
                     root=self._store.root, state="writable" if writable else "full",
                     free=usage.free, min_free=self._min_free)
            for callback in list(self._listeners):
                callback(writable)
        return writable

    def run_once(self) -> None:
        """Check now (every DISK_CHECK_SECONDS)."""
        self.check()


def _shielded(work: Deferred[Any]) -> Deferred[Any]:
    """`work`'s outcome; cancelling the returned Deferred leaves `work` running
    (its failure is then logged, since nobody waits for it)."""
    outer: Deferred[Any] = Deferred()

    def forward(result: Any) -> None:
        if not outer.called:
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)
        elif isinstance(result, Failure):
            log.failure("store work finished after its caller went away", result)

    work.addBoth(forward)
    return outer


def _add_change(stored: StoredFile) -> dict[str, Any]:
    return {"op": "add", "hash": stored.sha1, "ext": stored.ext, "size": stored.size}


class ContentService:
    """Content operations of one store, shared by the HTTP routes."""

    def __init__(self, store: ContentStore, receiver: PutReceiver,
                 publisher: InventoryPublisher, *, stats: StoreStats, guard: SyncGuard,
                 disk: DiskMonitor, leaving: LeavingCopies, run_blocking: RunBlocking,
                 store_client: Callable[[Any], StoreClient], peers: Any) -> None:
        self.store = store
        self.receiver = receiver
        self.publisher = publisher
        self.stats = stats
        self.guard = guard
        self.disk = disk
        self.leaving = leaving
        self._run_blocking = run_blocking
        self._store_client = store_client
        self._peers = peers
        self._hash_locks: dict[str, DeferredLock] = {}

    @contextlib.asynccontextmanager
    async def _exclusive(self, sha1: str) -> AsyncIterator[None]:
        """One disk change + journal append per hash at a time, so the journal
        records a concurrent PUT and remove in the order they hit the disk."""
        lock = self._hash_locks.setdefault(sha1, DeferredLock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked and not lock.waiting:
                self._hash_locks.pop(sha1, None)

    # -- puts ----------------------------------------------------------------
    async def commit(self, upload: PutUpload) -> tuple[StoredFile, bool]:
        """Verify, fsync, link into place and publish; (file, created).

        A caller that goes away (client disconnect, cancelled fetch) aborts
        the upload while it is still being written; once it is verified, the
        link and the journal entry are finished regardless, so a file on
        disk is always journaled.
        """
        try:
            digest = await _shielded(upload.finish())
        except OSError as exc:
            upload.abandon()
            log.error("write of {sha1} failed: {error}", sha1=upload.sha1, error=str(exc))
            raise InsufficientStorage("cannot write to this store") from None
        except BaseException:
            upload.abandon()
            raise
        if digest != upload.sha1:
            upload.abandon()
            log.warn("PUT of {sha1} refused: body hashes to {digest}", sha1=upload.sha1,
                     digest=digest)
            raise InvalidInput("SHA1 mismatch: the body hashes to {}".format(digest))
        stored, created = await _shielded(Deferred.fromCoroutine(self._link_and_record(upload)))
        self.stats.puts += 1
        self.stats.bytes_received += upload.size
        if created and self.stats.files is not None:
            self.stats.files += 1
        log.info("stored {sha1}.{ext} ({size} bytes){note}", sha1=stored.sha1, ext=stored.ext,
                 size=stored.size, note="" if created else " (already present)")
        return stored, created

    async def _link_and_record(self, upload: PutUpload) -> tuple[StoredFile, bool]:
        with self.guard.changing(upload.sha1):
            async with self._exclusive(upload.sha1):
                stored, created = await self._run_blocking(self._commit_blocking, upload)
        self.publisher.kick()
        return stored, created

    def _commit_blocking(self, upload: PutUpload) -> tuple[StoredFile, bool]:
        """In the thread pool, one trip: fsync and link the file, then journal its add
        durably (concurrent PUTs share the journal's fsyncs)."""
        stored, created = self.store.commit(upload.path, upload.sha1, upload.ext)
        self.publisher.append([_add_change(stored)])
        return stored, created

    # -- removals --------------------------------------------------------------
    async def remove(self, sha1: str) -> int:
        """Withdraw `sha1` and publish the removal (also when it was absent); files removed.
        Its bytes are still delivered for `[store] remove_grace` (`store/leaving.py`)."""
        check_hash(sha1)
        removed = await self._withdraw(sha1, lambda: self.store.set_aside(sha1), always=True)
        if removed:
            self.leaving.schedule(removed)
            self.stats.removes += 1
            log.info("removed {sha1}", sha1=sha1)
        return len(removed)

    async def quarantine(self, sha1: str, move: Callable[[], bool]) -> bool:
        """Run the blocking `move()` (takes a corrupt file of `sha1` off the
        content folder) and, when it moved the file, publish the removal; moved."""
        return bool(await _shielded(Deferred.fromCoroutine(
            self._withdraw(sha1, move, always=False))))

    async def _withdraw(self, sha1: str, discard: Callable[[], Any], *, always: bool) -> Any:
        """`discard()` off the reactor, then the removal journaled (when `always`
        or something was discarded), under the hash's lock; what it returned."""
        with self.guard.changing(sha1):
            async with self._exclusive(sha1):
                discarded = await self._run_blocking(discard)
                if always or discarded:
                    await self.publisher.record([{"op": "remove", "hash": sha1}])
        if discarded and self.stats.files is not None:
            self.stats.files = max(0, self.stats.files - 1)
        return discarded

    # -- lookups ---------------------------------------------------------------
    async def exists(self, hashes: list[str]) -> dict[str, Any]:
        """`{hash: {"exists", "ext", "size"}}` for each (validated) hash."""
        for sha1 in hashes:
            check_hash(sha1)
        return await self._run_blocking(self._exists_blocking, hashes)

    def _exists_blocking(self, hashes: list[str]) -> dict[str, Any]:
        answer = {}
        for sha1 in hashes:
            found = self.store.find(sha1)
            answer[sha1] = ({"exists": True, "ext": found.ext, "size": found.size}
                            if found else {"exists": False, "ext": "", "size": 0})
        return answer

    async def find(self, sha1: str) -> StoredFile:
        """The file of `sha1`, NotFound when absent."""
        check_hash(sha1)
        found = await self._run_blocking(self.store.find, sha1)
        if found is None:
            raise NotFound("content not found")
        return found

    # -- repair ----------------------------------------------------------------
    async def fetch(self, sha1: str, ext: str | None, source: object) -> tuple[StoredFile, bool]:
        """Copy `sha1` from the store `source` (through its /content/download)."""
        check_hash(sha1)
        if ext is not None:
            check_ext(ext)
        if not isinstance(source, str) or not source:
            raise InvalidInput("from must name a store")
        existing = await self._run_blocking(self.store.find, sha1)
        if existing is not None:
            return existing, False
        record = self._peers.get(source)
        if record is None or record.role != "store":
            raise NotFound("unknown store {}".format(source))
        if not self._peers.is_available(source):
            raise PeerUnavailable("store {} is unavailable".format(source))

        def open_upload(sent_ext: str, length: int | None, producer: Any) -> PutUpload:
            return self.receiver.open(sha1, ext or check_ext(sent_ext), length, producer)

        try:
            upload = await self._store_client(record).download(sha1, open_upload)
        except UpstreamError as exc:
            if exc.code == 404:
                raise NotFound("store {} does not hold {}".format(source, sha1)) from None
            raise
        except PeerUnavailable as exc:
            raise PeerUnavailable("download from {} failed: {}".format(source, exc)) from None
        except OSError as exc:
            log.error("write of a fetched content failed: {error}", error=str(exc))
            raise InsufficientStorage("cannot write to this store") from None
        stored, created = await self.commit(upload)
        log.info("fetched {sha1} from {source}", sha1=sha1, source=source)
        return stored, created

    # -- batched repair (store/batch.py) -----------------------------------------
    def source_client(self, source: object) -> StoreClient:
        """The client of the store named `source` to copy from; InvalidInput, NotFound (no
        such store) or PeerUnavailable (the ping net has it down)."""
        if not isinstance(source, str) or not source:
            raise InvalidInput("from must name a store")
        record = self._peers.get(source)
        if record is None or record.role != "store":
            raise NotFound("unknown store {}".format(source))
        if not self._peers.is_available(source):
            raise PeerUnavailable("store {} is unavailable".format(source))
        return self._store_client(record)

    @contextlib.asynccontextmanager
    async def changing(self, hashes: list[str]) -> AsyncIterator[None]:
        """Around the disk changes and journal append of several hashes at once (each
        hash's lock, taken in order, as a single change holds it)."""
        async with contextlib.AsyncExitStack() as stack:
            for sha1 in sorted(set(hashes)):
                stack.enter_context(self.guard.changing(sha1))
                await stack.enter_async_context(self._exclusive(sha1))
            yield
