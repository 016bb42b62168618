"""`Registration`: every prism and store registers with the master and keeps a registry copy.

At start-up it registers this node (`POST /peers/register`), retrying with a
growing backoff until the master answers, then downloads the registry
(`GET /peers`) into `Peers` every `[ping] registry_refresh` seconds.  When a
download fails the last good copy stays in place and the next attempt comes
sooner (backoff from `RETRY_FIRST_SECONDS`).  A store can push changes of its
`writable` flag through `set_writable`.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from stretchfs.pingnet.peers import PeerRecord, Peers
from stretchfs.wire.master import MasterClient

log = Logger()
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
SOON_MIN_SECONDS = 2.0


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling, capped."""
    return min(RETRY_FIRST_SECONDS * 2 ** max(attempt - 1, 0), RETRY_MAX_SECONDS)


class Registration(Service):
    """Registers this node with the master and refreshes `peers` from it."""

    def __init__(self, master: MasterClient, peers: Peers, *, clock: Any,
                 record: Callable[[], dict[str, Any]], refresh_seconds: float) -> None:
        self._master = master
        self._peers = peers
        self._clock = clock
        self._record = record
        self._refresh = refresh_seconds
        self._call: Any = None
        self._busy: Deferred[Any] | None = None
        self.registered = False
        self.last_refresh: float | None = None
        self._attempts = 0
        self._master_down = False
        self._writable: bool | None = None
        self._writable_pushed: bool | None = None

    def startService(self) -> None:
        """Start registering (the first attempt runs at once)."""
        super().startService()
        self._attempts = 0
        self._schedule(0.0)

    def stopService(self) -> None:
        """Cancel the next attempt."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, delay: float) -> None:
        if not self.running:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._call = None
        if self._busy is not None:
            return
        self._busy = ensureDeferred(self._step())

        def done(delay: float) -> None:
            self._busy = None
            self._schedule(delay)

        def failed(failure: Any) -> None:
            self._busy = None
            log.failure("registration step failed", failure)
            self._schedule(RETRY_MAX_SECONDS)

        self._busy.addCallbacks(done, failed)

    async def _step(self) -> float:
        """One attempt: register (until done), push writable, refresh; returns the next delay."""
        try:
            if not self.registered:
                record = self._record()
                await self._master.register_peer(record)
                self.registered = True
                log.info("registered {name} with the master at {url}", name=record.get("name"),
                         url=self._master.base_url, event="registered")
            if self._writable is not None and self._writable != self._writable_pushed:
                wanted = self._writable
                await self._master.update_peer(str(self._record().get("name")), writable=wanted)
                self._writable_pushed = wanted
            rows = await self._master.list_peers()
            records = [PeerRecord.from_json(row) for row in rows]
        except Exception as exc:
            self._attempts += 1
            delay = backoff(self._attempts)
            if not self._master_down:
                self._master_down = True
                log.warn("master unreachable ({error}); keeping the last registry copy, "
                         "retrying in {delay}s", error=str(exc), delay=delay,
                         event="registry_unreachable")
            return delay
        self._attempts = 0
        if self._master_down:
            self._master_down = False
            log.info("master reachable again", event="registry_reachable")
        self._peers.set_registry(records)
        self.last_refresh = self._clock.seconds()
        log.debug("registry refreshed: {count} peers", count=len(records))
        return self._refresh

    def refresh_soon(self) -> None:
        """Download the registry now (a peer we do not know yet has pinged us).

        At most once per SOON_MIN_SECONDS, and only once registered.
        """
        if not self.running or self._busy is not None or not self.registered:
            return
        if self.last_refresh is not None and (
                self._clock.seconds() - self.last_refresh < SOON_MIN_SECONDS):
            return
        self._schedule(0.0)

    def set_writable(self, writable: bool) -> None:
        """Push this store's `writable` flag to the master (now, retried until it lands).

        A full disk clears the flag; room again sets it back only if this store
        was the one that cleared it, so an operator's `writable = false` stays.
        """
        if writable and self._writable_pushed is not False:
            self._writable = None   # nothing of ours to undo (or our False never landed)
            return
        self._writable = writable
        if self.running and self._busy is None and self.registered:
            self._schedule(0.0)
