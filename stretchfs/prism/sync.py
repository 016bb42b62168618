"""Keeps a mirror in step with the master: snapshot at start, then the feed.

`MirrorSync` downloads the full snapshot (readiness blocked until it is
in), then long-polls the change feed from the snapshot's cursor and applies
every change.  A 410 (cursor trimmed) reloads the snapshot into a fresh
mirror that replaces the old one only once complete, so lookups never see a
half-loaded mirror.  The master being unreachable for longer than
`MASTER_GRACE_SECONDS` marks the prism not ready until it answers again.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from stretchfs.errors import UpstreamError
from stretchfs.health import Readiness

log = Logger()

FEED_WAIT_SECONDS = 5.0
RETRY_SECONDS = 1.0
MIN_POLL_GAP_SECONDS = 0.05
MASTER_GRACE_SECONDS = 30.0

LoadSnapshot = Callable[[Callable[[Any], None]], Awaitable[str]]
ReadFeed = Callable[[str, float], Awaitable[dict[str, Any]]]


class Mirror(Protocol):
    """What a sync needs of the mirror it fills (`InventoryMirror`, `PurchaseMirror`)."""

    def load_row(self, row: dict[str, Any]) -> None:
        """Take one row of the snapshot."""

    def apply(self, change: dict[str, Any]) -> None:
        """Apply one change of the feed."""

    def __len__(self) -> int:
        """The number of rows."""


M = TypeVar("M", bound=Mirror)


class MirrorSync(Service, Generic[M]):
    """Loads and follows one of the master's databases into `self.mirror`."""

    def __init__(self, kind: str, *, load_snapshot: LoadSnapshot, read_feed: ReadFeed,
                 new_mirror: Callable[[], M], readiness: Readiness, clock: IReactorTime) -> None:
        self.kind = kind
        self._load_snapshot = load_snapshot
        self._read_feed = read_feed
        self._new_mirror = new_mirror
        self._readiness = readiness
        self._clock = clock
        self.mirror = new_mirror()
        self.cursor: str | None = None
        self.loaded = False
        self.reloads = 0
        self.changes_applied = 0
        self._running = False
        self._loop: Deferred[None] | None = None
        self._failing_since: float | None = None
        self._fresh = False
        self._readiness_key = "sync-" + kind
        self._master_key = "master-" + kind

    def startService(self) -> None:
        """Block readiness and start loading."""
        super().startService()
        self._readiness.block(self._readiness_key,
                              "loading the {} snapshot from the master".format(self.kind))
        self._running = True
        self._loop = Deferred.fromCoroutine(self._run())

    def stopService(self) -> Deferred[None]:
        """Stop following; fires once the loop has ended."""
        super().stopService()
        self._running = False
        loop, self._loop = self._loop, None
        if loop is None:
            return succeed(None)
        loop.addErrback(lambda _: None)
        loop.cancel()
        return loop

    async def _run(self) -> None:
        while self._running:
            try:
                if self.cursor is None:
                    await self._reload()
                    continue
                started = self._clock.seconds()
                feed = await self._read_feed(self.cursor, FEED_WAIT_SECONDS)
                self._fresh = False
                changes = feed.get("changes") or []
                for change in changes:
                    self.mirror.apply(change)
                self.changes_applied += len(changes)
                self.cursor = str(feed.get("cursor", self.cursor))
                self._master_ok()
                if not changes and self._clock.seconds() - started < MIN_POLL_GAP_SECONDS:
                    await deferLater(self._clock, MIN_POLL_GAP_SECONDS)
            except UpstreamError as exc:
                if not self._running:
                    break
                if exc.code in (410, 200):
                    # 410: the cursor was trimmed; a 200 UpstreamError: a page past the
                    # reply cap (an older master without byte-capped pages).  Both
                    # recover by reloading the snapshot, which streams.
                    log.warn("{kind} feed cursor {cursor} unusable ({code}), reloading",
                             kind=self.kind, cursor=self.cursor, code=exc.code)
                    self.cursor = None
                    if self._fresh:
                        # Trimmed again right after a reload: do not spin.
                        await deferLater(self._clock, RETRY_SECONDS)
                    continue
                await self._failed(exc)
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                if not self._running:
                    break
                await self._failed(exc)

    async def _reload(self) -> None:
        fresh = self._new_mirror()
        started = self._clock.seconds()
        cursor = await self._load_snapshot(fresh.load_row)
        self.mirror = fresh
        self.cursor = cursor
        self.reloads += 1
        self._fresh = True
        self._master_ok()
        log.info("{kind} snapshot loaded: {count} entries in {seconds:.1f}s, cursor {cursor}",
                 kind=self.kind, count=len(fresh), seconds=self._clock.seconds() - started,
                 cursor=cursor)
        if not self.loaded:
            self.loaded = True
            self._readiness.clear(self._readiness_key)

    def _master_ok(self) -> None:
        if self._failing_since is not None:
            log.info("{kind} feed: master reachable again", kind=self.kind)
        self._failing_since = None
        self._readiness.clear(self._master_key)

    async def _failed(self, exc: Exception) -> None:
        now = self._clock.seconds()
        if self._failing_since is None:
            self._failing_since = now
            log.warn("{kind} sync failed: {error}", kind=self.kind, error=str(exc))
        elif now - self._failing_since >= MASTER_GRACE_SECONDS:
            self._readiness.block(self._master_key, "master unreachable for {:.0f}s ({})".format(
                now - self._failing_since, self.kind))
        await deferLater(self._clock, RETRY_SECONDS)
