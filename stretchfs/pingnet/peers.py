"""`Peers`: the one object through which a process learns who is up.

It holds this process's copy of the peer registry (from the master) and the
ping net's verdict on each peer.  Every outgoing call to a prism or store
picks its target here, so no code path knowingly calls a peer that is down.
Until the ping net has a verdict on a peer, a registered active peer counts
as available.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True)
class PeerRecord:
    """One registered prism or store, as the master lists it."""

    name: str
    role: str
    host: str
    port: int
    ping_port: int
    site: str = "local"
    zone: str = "a"
    url: str = ""
    active: bool = True
    writable: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PeerRecord":
        """Build from a record of `GET /peers`."""
        url = data.get("url") or "http://{}:{}".format(data["host"], data["port"])
        return cls(name=str(data["name"]), role=str(data["role"]), host=str(data["host"]),
                   port=int(data["port"]), ping_port=int(data.get("ping_port") or 0),
                   site=str(data.get("site", "local")), zone=str(data.get("zone", "a")),
                   url=str(url).rstrip("/"), active=bool(data.get("active", True)),
                   writable=bool(data.get("writable", True)))


@dataclass
class Peers:
    """Registry copy plus availability verdicts."""

    self_name: str = ""
    _records: dict[str, PeerRecord] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)
    registry_version: int = 0

    # -- registry ----------------------------------------------------------
    def set_registry(self, records: Iterable[PeerRecord]) -> None:
        """Replace the registry copy (on each download from the master)."""
        self._records = {record.name: record for record in records}
        self.registry_version += 1
        self._down &= set(self._records)

    def get(self, name: str) -> PeerRecord | None:
        """The registry record of `name`, if registered."""
        return self._records.get(name)

    def all(self, role: str | None = None) -> list[PeerRecord]:
        """Every registered peer (of `role`), sorted by name."""
        return sorted((r for r in self._records.values() if role is None or r.role == role),
                      key=lambda r: r.name)

    def members(self) -> dict[str, str]:
        """The ping net: active peers with a UDP port, name -> site, sorted by name."""
        return {r.name: r.site for r in self.all() if r.active and r.ping_port}

    # -- verdicts ----------------------------------------------------------
    def set_available(self, name: str, available: bool) -> None:
        """Record the ping net's verdict on `name`."""
        if available:
            self._down.discard(name)
        else:
            self._down.add(name)

    def is_available(self, name: str) -> bool:
        """True when `name` is registered, active and not voted down."""
        record = self._records.get(name)
        return record is not None and record.active and name not in self._down

    def is_down(self, name: str) -> bool:
        """True when the ping net has marked `name` unavailable."""
        return name in self._down

    def candidates(self, role: str, *, writable: bool | None = None,
                   exclude: Iterable[str] = ()) -> list[PeerRecord]:
        """Available peers of `role` (optionally writable only), minus `exclude`."""
        skip = set(exclude)
        return [r for r in self.all(role)
                if r.name not in skip and self.is_available(r.name)
                and (writable is None or r.writable == writable)]
