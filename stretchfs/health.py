"""Readiness of a process: a set of named reasons why it is not ready."""

from __future__ import annotations


class Readiness:
    """Tracks why a service is not ready; ready when no reason is left."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def block(self, key: str, reason: str) -> None:
        """Mark the service not ready for `reason` (replaces an earlier one of `key`)."""
        self._reasons[key] = reason

    def clear(self, key: str) -> None:
        """Drop the reason `key`; the service is ready once none is left."""
        self._reasons.pop(key, None)

    @property
    def ready(self) -> bool:
        """True when nothing blocks the service."""
        return not self._reasons

    @property
    def reasons(self) -> list[str]:
        """The reasons currently blocking, in the order they were set."""
        return list(self._reasons.values())
