"""DiskMonitor: the writable flag follows free space, with change callbacks."""

from __future__ import annotations

from stretchfs.store.content import DISK_CHECK_SECONDS, DiskMonitor
from stretchfs.store.layout import DiskUsage


class FakeDisk:
    """A ContentStore stand-in whose free space the test sets."""

    root = "/fake"

    def __init__(self, free: int) -> None:
        self.free = free

    def disk_usage(self) -> DiskUsage:
        return DiskUsage(total=1000, free=self.free)


def test_writable_flag_follows_free_space_every_check(clock) -> None:
    """Below min_free the store turns not writable, above it writable again; callbacks fire."""
    disk = FakeDisk(free=900)
    monitor = DiskMonitor(disk, min_free=100, clock=clock)
    changes: list[bool] = []
    monitor.on_change(changes.append)
    monitor.startService()
    assert monitor.writable is True and changes == []
    disk.free = 50
    clock.advance(DISK_CHECK_SECONDS)
    assert monitor.writable is False and changes == [False]
    assert (monitor.total, monitor.free) == (1000, 50)
    disk.free = 500
    clock.advance(DISK_CHECK_SECONDS)
    assert monitor.writable is True and changes == [False, True]
    monitor.stopService()
    assert clock.getDelayedCalls() == []
