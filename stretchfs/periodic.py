"""`PeriodicService`: a Service that runs `run_once` every `interval` seconds on a clock."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall


class PeriodicService(Service):
    """Calls `run_once()` every `interval` seconds on the injected `clock`.

    When `run_once` returns a Deferred the next run waits for it, so runs never
    overlap; `run_once` handles (logs) its own failures.  Stopping stops the
    loop without waiting for a run in flight.
    """

    def __init__(self, clock: IReactorTime, interval: float, *, now: bool = True) -> None:
        self._clock = clock
        self._interval = interval
        self._now = now
        self._loop: LoopingCall | None = None

    def run_once(self) -> Any:
        """One run (subclasses)."""
        raise NotImplementedError

    def startService(self) -> None:
        """Run now (unless `now` is false) and every interval."""
        super().startService()
        self._loop = LoopingCall(self.run_once)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=self._now)

    def stopService(self) -> None:
        """Stop the loop."""
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
