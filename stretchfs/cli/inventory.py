"""`stretchfs inventory sync|delivery-secret`: a store's inventory by hand.

`sync` does what a store does at start-up, once, with a progress bar on
stderr: download what the master believes this store holds, walk the
content folder, and publish the difference both ways (straight to the
master, in `[inventory] batch_size` batches).  It reads the store's config.
The store must be stopped: one writer per root (the sync refuses while a
store holds the root's lock, and a store waits for a running sync).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from stretchfs.exitcodes import EX_CONFIG, EX_TEMPFAIL, EX_UNAVAILABLE

PROGRESS_EVERY_FILES = 5000
BAR_WIDTH = 30


def add_parser(subparsers: Any) -> None:
    """Register `inventory` and its subcommands."""
    inventory = subparsers.add_parser("inventory", help="a store's inventory, by hand")
    sub = inventory.add_subparsers(dest="inventory_command", required=True)
    sync = sub.add_parser("sync", help="sync this store's inventory with the master once")
    sync.add_argument("--config", "-c", required=True, help="the store's TOML config")
    sync.add_argument("--dry-run", action="store_true",
                      help="count the differences, publish nothing")
    sync.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sync.set_defaults(func=run_sync)
    secret = sub.add_parser("delivery-secret",
                            help="print the secret nginx needs to check signed URLs")
    secret.add_argument("--config", "-c", required=True, help="the store's TOML config")
    secret.set_defaults(func=run_delivery_secret)


def _load(path: str, err: TextIO) -> Any:
    from stretchfs.config import load_config
    from stretchfs.errors import ConfigError

    try:
        return load_config("store", path)
    except ConfigError as exc:
        err.write("stretchfs inventory: {}\n".format(exc))
        return None


def run_delivery_secret(args: argparse.Namespace) -> int:
    """Print the delivery secret derived from the cluster key."""
    from stretchfs.wire.signing import delivery_secret

    config = _load(args.config, sys.stderr)
    if config is None:
        return EX_CONFIG
    print(delivery_secret(config.cluster.key))
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal stream (plain lines when not a TTY)."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self._out = out
        self._quiet = quiet
        self._tty = out.isatty()
        self._last_line = 0.0

    def show(self, label: str, done: int, total: int | None, unit: str) -> None:
        """Draw `done` of `total` (an estimate when None)."""
        if self._quiet:
            return
        if total:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * done / max(total, 1)))
            bar = "[{}{}] {:>3}% ".format("#" * filled, "." * (BAR_WIDTH - filled),
                                         min(100, int(100 * done / max(total, 1))))
        else:
            bar = ""
        text = "{:<10} {}{:,} {}".format(label, bar, done, unit)
        if self._tty:
            self._out.write("\r" + text + "   ")
        elif time.monotonic() - self._last_line >= 2.0:
            self._out.write(text + "\n")
            self._last_line = time.monotonic()
        self._out.flush()

    def end(self) -> None:
        """Finish the line."""
        if not self._quiet and self._tty:
            self._out.write("\n")
            self._out.flush()


def run_sync(args: argparse.Namespace) -> int:
    """Run one inventory sync against the master; exit code."""
    config = _load(args.config, sys.stderr)
    if config is None:
        return EX_CONFIG
    from twisted.internet import task

    result: dict[str, int] = {}

    def main(reactor: Any) -> Any:
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(sync_once(reactor, config, args.dry_run,
                                     ProgressBar(sys.stderr, args.quiet), sys.stdout))
        d.addCallback(lambda code: result.update(code=code))
        return d

    try:
        task.react(main)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return int(exc.code)
    return result.get("code", 1)


async def sync_once(reactor: Any, config: Any, dry_run: bool, bar: ProgressBar,
                    out: TextIO) -> int:
    """Download, scan, publish; prints a summary line; returns the exit code.

    Refused (EX_TEMPFAIL) while the store process holds its root: two
    writers would publish one hash's changes out of order.
    """
    from stretchfs.store.layout import ContentStore

    store = ContentStore(config.store.root)
    if not os.path.isdir(store.content_dir):
        out.write("no content folder at {}\n".format(store.content_dir))
        return 1
    try:
        root_lock = store.lock()
    except BlockingIOError:
        out.write("the store process is running on {} and syncs by itself (at start-up and "
                  "every {:.0f} s); restart it to sync now\n".format(
                      store.root, config.inventory.interval))
        return EX_TEMPFAIL
    try:
        return await _sync_locked(reactor, config, store, dry_run, bar, out)
    finally:
        root_lock.close()


async def _sync_locked(reactor: Any, config: Any, store: Any, dry_run: bool, bar: ProgressBar,
                       out: TextIO) -> int:
    from twisted.internet.threads import deferToThread

    from stretchfs.errors import PeerUnavailable, UpstreamError
    from stretchfs.store.inventory import KnownInventory, SpoolSink, diff_inventory
    from stretchfs.wire.http import make_http_client
    from stretchfs.wire.master import MasterClient

    master = MasterClient(make_http_client(reactor, persistent=False,
                                           ca_file=config.tls.ca_file),
                          config.cluster.master_urls, config.cluster.key,
                          config.cluster.request_timeout, reactor)
    name = config.node.name
    started = time.monotonic()
    known = KnownInventory()

    def take_row(row: Any) -> None:
        known.add_row(row)
        if len(known.rows) % 50_000 == 0:
            bar.show("master", len(known.rows), None, "rows")

    try:
        await master.store_inventory(name, take_row)
    except (PeerUnavailable, UpstreamError) as exc:
        bar.end()
        out.write("cannot download the master's inventory of {}: {}\n".format(name, exc))
        return EX_UNAVAILABLE
    bar.show("master", len(known.rows), None, "rows")
    bar.end()
    estimate = len(known.rows)

    def progress(report: Any) -> None:
        bar.show("scan", report.files, max(estimate, report.files), "files")

    os.makedirs(store.tmp_dir, exist_ok=True)
    spool = SpoolSink(os.path.join(store.tmp_dir, "inventory-sync-{}.ndjson".format(os.getpid())))
    try:
        report = await deferToThread(diff_inventory, store, known, spool, progress,
                                     PROGRESS_EVERY_FILES)
        progress(report)
        bar.end()
        if not dry_run and spool.count:
            sent = 0
            for batch in spool.batches(min(config.inventory.batch_size, 10_000)):
                try:
                    await master.publish(name, batch)
                except (PeerUnavailable, UpstreamError) as exc:
                    bar.end()
                    out.write("publish failed after {} of {} changes: {}\n".format(
                        sent, spool.count, exc))
                    return EX_UNAVAILABLE
                sent += len(batch)
                bar.show("publish", sent, spool.count, "changes")
            bar.end()
    finally:
        try:
            os.unlink(spool.path)
        except FileNotFoundError:
            pass
    out.write("{}: {} files ({} bytes) on disk, master listed {}; {} added, {} removed, "
              "{} skipped{} in {:.1f} s\n".format(
                  name, report.files, report.bytes, report.known, report.added, report.removed,
                  report.invalid, " (dry run, nothing published)" if dry_run else "",
                  time.monotonic() - started))
    return 0
