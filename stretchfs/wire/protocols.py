"""What one role needs of another, as `typing.Protocol`s.

`MasterClient` and `StoreClient` satisfy them; tests pass fakes that provide
only what the code under test calls.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class SessionSource(Protocol):
    """The master as a prism's session cache sees it."""

    async def validate_session(self, token: str) -> dict[str, Any]:
        """The session of `token` (UpstreamError 401 when invalid)."""


class InventorySink(Protocol):
    """The master as a store's inventory publisher and sync see it."""

    async def publish(self, store: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
        """Publish a batch of the store's adds/removes."""

    async def store_inventory(self, store: str, on_row: Callable[[Any], None]) -> int:
        """Stream what the master believes `store` holds; returns the row count."""


class ContentTarget(Protocol):
    """A store as a prism writing copies sees it."""

    async def put(self, sha1: str, ext: str, source: str | bytes,
                  size: int) -> dict[str, Any]:
        """PUT `source` (a file's path, or the bytes) as `sha1`.`ext`."""
