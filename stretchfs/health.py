"""Readiness of a process: a set of named reasons why it is not ready."""

from __future__ import annotations

from typing import Callable


class Readiness:
    """Tracks why a service is not ready; ready when no reason is left."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}
        self._listeners: list[Callable[[bool], None]] = []

    def block(self, key: str, reason: str) -> None:
        """Mark the service not ready for `reason` (replaces an earlier one of `key`)."""
        was_ready = self.ready
        self._reasons[key] = reason
        if was_ready:
            self._notify()

    def clear(self, key: str) -> None:
        """Drop the reason `key`; the service is ready once none is left."""
        if self._reasons.pop(key, None) is not None and self.ready:
            self._notify()

    @property
    def ready(self) -> bool:
        """True when nothing blocks the service."""
        return not self._reasons

    @property
    def reasons(self) -> list[str]:
        """The reasons currently blocking, in the order they were set."""
        return list(self._reasons.values())

    def on_change(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(ready)` whenever readiness flips."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback(self.ready)
