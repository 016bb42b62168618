"""Removed copies stay deliverable for `[store] remove_grace` seconds, then go.

A removal (a trim, a drain's last step, an operator) withdraws the copy at
once: it is published as removed and no longer found, listed or copied.  A
prism that redirected a user to this store just before it learned of the
removal would still send that user here, so the bytes wait in `leaving/`
(`ContentStore.set_aside`), where only signed delivery looks, until the
grace ends.  A clean stop deletes them at once and a start deletes what a
crash left: an acknowledged removal is never undone.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from stretchfs.store.layout import ContentStore, StoredFile
from stretchfs.threads import RunBlocking

log = Logger()


class LeavingCopies(Service):
    """Deletes each set-aside copy `grace` seconds after its removal."""

    def __init__(self, store: ContentStore, grace: float, clock: IReactorTime,
                 run_blocking: RunBlocking) -> None:
        self._store = store
        self._grace = grace
        self._clock = clock
        self._run_blocking = run_blocking
        self._waiting: list[tuple[IDelayedCall, list[StoredFile]]] = []

    def schedule(self, files: list[StoredFile]) -> None:
        """Delete `files` (just set aside) when the grace ends."""
        entry: tuple[IDelayedCall, list[StoredFile]]

        def due() -> None:
            self._waiting.remove(entry)
            self._purge(files)

        entry = (self._clock.callLater(self._grace, due), files)
        self._waiting.append(entry)

    def _purge(self, files: list[StoredFile]) -> Deferred[Any]:
        purged: Deferred[Any] = self._run_blocking(self._store.purge, files)
        return purged.addErrback(lambda failure: log.failure(
            "cannot delete removed copies in {folder}", failure,
            folder=self._store.leaving_dir))

    def stopService(self) -> Deferred[Any]:
        """End every grace now: delete what is still set aside."""
        super().stopService()
        files = [stored for call, batch in self._waiting for stored in batch]
        for call, _ in self._waiting:
            call.cancel()
        self._waiting.clear()
        return self._purge(files) if files else succeed(None)
