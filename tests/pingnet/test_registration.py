"""Registration with the master, registry refresh, and the availability API."""

from __future__ import annotations

from typing import Any

from stretchfs.errors import PeerUnavailable, UpstreamError
from stretchfs.pingnet.peers import Peers
from stretchfs.pingnet.registration import Registration, backoff


def _row(name: str, role: str = "store", **extra: Any) -> dict[str, Any]:
    row = {"name": name, "role": role, "host": "127.0.0.1", "port": 8000, "ping_port": 9000,
           "active": True, "writable": True}
    row.update(extra)
    return row


class FakeMaster:
    """Answers register/list/update like MasterClient, or fails while `down`."""

    base_url = "http://master"

    def __init__(self) -> None:
        self.down = False
        self.rows = [_row("store1"), _row("store2"), _row("prism1", "prism")]
        self.registered: list[dict[str, Any]] = []
        self.updates: list[tuple[str, dict[str, bool]]] = []

    def _check(self) -> None:
        if self.down:
            raise PeerUnavailable("master unreachable")

    async def register_peer(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add or refresh the peer's row (keeping its flags) and answer it, as the master."""
        self._check()
        self.registered.append(record)
        row = self._row(record["name"])
        if row is None:
            row = {"active": True, "writable": True}
            self.rows.append(row)
        row.update(record)
        row.setdefault("url", "http://{}:{}".format(row.get("host"), row.get("port")))
        return dict(row)

    async def list_peers(self) -> list[dict[str, Any]]:
        self._check()
        return [dict(r) for r in self.rows]

    async def update_peer(self, name: str, **flags: bool) -> dict[str, Any]:
        """Set the flags of a known peer and answer its row (404 when unknown)."""
        self._check()
        self.updates.append((name, flags))
        row = self._row(name)
        if row is None:
            raise UpstreamError(404, b'{"error":"no such peer"}')
        row.update(flags)
        return dict(row)

    def _row(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["name"] == name), None)


def _registration(clock, master, peers, refresh=60.0) -> Registration:
    return Registration(master, peers, clock=clock, refresh_seconds=refresh,
                        record=lambda: {"name": "store1", "role": "store", "port": 8000})


def _started(clock, self_name: str):
    """A started registration of `self_name` against a fake master, first round done."""
    master, peers = FakeMaster(), Peers(self_name=self_name)
    service = _registration(clock, master, peers)
    service.startService()
    clock.advance(0)
    return master, peers, service


def test_registers_with_backoff_until_the_master_answers(clock) -> None:
    """Registration retries with a doubling backoff and stops once the master answers."""
    master, peers = FakeMaster(), Peers(self_name="store1")
    master.down = True
    service = _registration(clock, master, peers)
    service.startService()
    clock.advance(0)
    for delay in (0.5, 1.0, 2.0):
        assert master.registered == []
        clock.advance(delay)
    master.down = False
    clock.advance(4.0)
    assert len(master.registered) == 1 and service.registered
    assert [r.name for r in peers.all()] == ["prism1", "store1", "store2"]
    service.stopService()
    assert clock.getDelayedCalls() == []


def test_backoff_is_capped() -> None:
    """The retry delay doubles from 0.5 s up to 30 s."""
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(20) == 30.0


def test_registry_refresh_keeps_last_copy_while_master_is_away(clock) -> None:
    """The registry is refreshed every interval; a failed download keeps the last copy."""
    master, peers = FakeMaster(), Peers(self_name="store1")
    service = _registration(clock, master, peers, refresh=60.0)
    service.startService()
    clock.advance(0)
    master.rows.append(_row("store3"))
    clock.advance(59.0)
    assert peers.get("store3") is None
    clock.advance(1.0)
    assert peers.get("store3") is not None
    master.down = True
    clock.advance(60.0)
    clock.advance(30.0)
    assert len(peers.all()) == 4
    master.down = False
    master.rows = [r for r in master.rows if r["name"] != "store2"]
    clock.advance(30.0)
    assert peers.get("store2") is None
    assert len(master.registered) == 1
    service.stopService()
    assert clock.getDelayedCalls() == []


def test_writable_changes_are_pushed_to_the_master(clock) -> None:
    """A store's writable flip is sent to the master once it is registered."""
    master, peers, service = _started(clock, "store1")
    service.set_writable(False)
    clock.advance(0)
    assert master.updates == [("store1", {"writable": False})]
    service.stopService()


def test_candidates_never_include_a_peer_marked_down(clock) -> None:
    """A caller that picks targets through candidates() makes no call to a downed peer."""
    master, peers, service = _started(clock, "prism1")
    peers.set_available("store2", False)
    called = [record.name for record in peers.candidates("store")]
    assert "store2" not in called and "store1" in called
    assert not peers.is_available("store2")
    peers.set_available("store2", True)
    assert [r.name for r in peers.candidates("store")] == ["store1", "store2"]
    service.stopService()


def test_refresh_soon_downloads_the_registry_at_most_every_two_seconds(clock) -> None:
    """A ping from an unknown peer triggers a registry download, rate-limited."""
    master, peers, service = _started(clock, "store1")
    master.rows.append(_row("store9"))
    service.refresh_soon()
    clock.advance(0)
    assert peers.get("store9") is None
    clock.advance(2.0)
    service.refresh_soon()
    clock.advance(0)
    assert peers.get("store9") is not None
    service.stopService()
    assert clock.getDelayedCalls() == []


def test_room_again_only_undoes_our_own_writable_false(clock) -> None:
    """Writable is set back only after this store cleared it; an operator's flag is left alone."""
    master, peers, service = _started(clock, "store1")
    service.set_writable(True)
    clock.advance(0)
    assert master.updates == []
    service.set_writable(False)
    clock.advance(0)
    service.set_writable(True)
    clock.advance(0)
    assert master.updates == [("store1", {"writable": False}), ("store1", {"writable": True})]
    service.stopService()
