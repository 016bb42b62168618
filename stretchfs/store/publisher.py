"""Publishes the journal's changes to the master, in order, until acknowledged.

Every put and remove is appended (fsynced) to the `Journal` and then sent
in batches of at most `[inventory] batch_size`: at once when the store was
quiet, else once `PUBLISH_EVERY_SECONDS` have passed since the last publish
began, so under load the master (and every prism's feed) gets a few publishes
of many changes a second instead of one per PUT.  A change is journaled
before its PUT is answered, so the wait only delays when the master learns
it.  A backlog of full batches goes out back to back; acknowledging a batch
and reading the next one are one trip to the thread pool.  While the master
is unreachable the batch is retried with a growing delay (1 s up to
`MAX_RETRY_SECONDS`); later changes wait behind it, so order is kept.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.store.journal import Journal
from stretchfs.threads import RunBlocking
from stretchfs.wire.protocols import InventorySink

log = Logger()

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 2.0  # a returning master must hear the queued changes at once
MAX_BATCHES_PER_KICK = 1000  # bounds one drain loop; `kick` starts the next
PUBLISH_EVERY_SECONDS = 0.05

class InventoryPublisher(Service):
    """Drains the journal into `master.publish(store_name, changes)`."""

    def __init__(self, journal: Journal, master: InventorySink, store_name: str, *,
                 clock: IReactorTime, batch_size: int, run_blocking: RunBlocking) -> None:
        self._journal = journal
        self._master = master
        self._store_name = store_name
        self._clock = clock
        self._batch_size = min(batch_size, 10_000)
        self._run_blocking = run_blocking
        self._busy = False
        self._retry_call: IDelayedCall | None = None
        self._next_call: IDelayedCall | None = None
        self._last_start: float | None = None
        self._delay = FIRST_RETRY_SECONDS

    @property
    def backlog(self) -> int:
        """Changes waiting for the master's acknowledgement."""
        return self._journal.pending

    def startService(self) -> None:
        """Start draining what an earlier run left in the journal."""
        super().startService()
        if self._journal.pending:
            log.info("{count} inventory changes from an earlier run wait for the master",
                     count=self._journal.pending)
        self.kick()

    def stopService(self) -> Deferred[None]:
        """Stop retrying (what is unpublished stays in the journal)."""
        super().stopService()
        for call in (self._retry_call, self._next_call):
            if call is not None and call.active():
                call.cancel()
        self._retry_call = self._next_call = None
        return succeed(None)

    def append(self, changes: list[dict[str, Any]]) -> int:
        """Blocking (off the reactor): journal `changes` durably; how many were written.
        Concurrent appends share fsyncs (group commit).  Call `kick` afterwards."""
        return self._journal.append(changes)

    def record(self, changes: list[dict[str, Any]]) -> Deferred[int]:
        """Journal `changes` durably, then publish them; fires once they are on disk."""
        d = self._run_blocking(self.append, changes)

        def written(count: int) -> int:
            self.kick()
            return count

        return d.addCallback(written)

    def kick(self) -> None:
        """Publish what is pending: now, or `PUBLISH_EVERY_SECONDS` after the last publish
        began; nothing while one is in flight or a retry is scheduled."""
        if not self.running or self._busy or not self._journal.pending:
            return
        for call in (self._retry_call, self._next_call):
            if call is not None and call.active():
                return
        now = self._clock.seconds()
        if self._last_start is not None:
            wait = self._last_start + PUBLISH_EVERY_SECONDS - now
            if 0 < wait <= PUBLISH_EVERY_SECONDS:  # (the reactor's clock may step back)
                self._next_call = self._clock.callLater(wait, self._kick_later)
                return
        self._busy = True
        self._last_start = now
        ensureDeferred(self._publish_next())

    def _kick_later(self) -> None:
        self._next_call = None
        self.kick()

    def _ack_and_read(self, acked: tuple[int, int] | None
                      ) -> tuple[list[dict[str, Any]], int]:
        """Blocking: acknowledge the last batch (offset, count), then read the next."""
        if acked is not None:
            self._journal.ack(*acked)
        return self._journal.read_batch(self._batch_size)

    async def _publish_next(self) -> None:
        acked: tuple[int, int] | None = None
        published = 0
        try:
            for _round in range(MAX_BATCHES_PER_KICK):
                # Journal reads and acks touch the disk (and the journal lock): keep
                # them off the reactor thread, one trip for both.
                changes, end = await self._run_blocking(self._ack_and_read, acked)
                acked = None
                if not changes and end == self._journal.acked_offset:
                    break
                if changes:
                    await self._master.publish(self._store_name, changes)
                acked = (end, len(changes))
                published += len(changes)
                if 0 < len(changes) < self._batch_size:
                    break  # the backlog is drained: later changes wait for the next turn
            if acked is not None:
                await self._run_blocking(self._journal.ack, *acked)
        except (PeerUnavailable, UpstreamError) as exc:
            self._failed(str(exc))
            return
        except Exception:
            log.failure("while publishing inventory changes")
            self._failed("unexpected error")
            return
        finally:
            self._busy = False
        self._delay = FIRST_RETRY_SECONDS
        log.debug("published {count} inventory changes", count=published)
        self.kick()

    def _failed(self, reason: str) -> None:
        self._busy = False
        log.warn("inventory publish failed ({reason}); {count} changes queued, retry in "
                 "{delay} s", reason=reason, count=self._journal.pending, delay=self._delay)
        if self.running:
            self._retry_call = self._clock.callLater(self._delay, self._retry)
        self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)

    def _retry(self) -> None:
        self._retry_call = None
        self.kick()
