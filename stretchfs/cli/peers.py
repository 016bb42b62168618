"""`stretchfs peer list|update|drain|remove`: the operator's side of the peer registry."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TextIO

from stretchfs.cli.main import master_command
from stretchfs.master.cliconn import run_against_master

if TYPE_CHECKING:
    from stretchfs.wire.master import MasterClient


def add_parser(subparsers: Any) -> None:
    """Register `peer` and its subcommands."""
    peer = subparsers.add_parser("peer", help="manage registered prisms and stores")
    sub = peer.add_subparsers(dest="peer_command", required=True)
    master_command(sub, "list", list_peers, help="list peers with their flags")
    update = master_command(sub, "update", update_peer,
                            help="set a peer's active/writable flags")
    update.add_argument("name", help="the peer's name, as `peer list` shows it")
    active = update.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_const", const=True,
                        help="let the cluster use the peer")
    active.add_argument("--inactive", dest="active", action="store_const", const=False,
                        help="take the peer out of service (nothing is sent to it)")
    writable = update.add_mutually_exclusive_group()
    writable.add_argument("--writable", dest="writable", action="store_const", const=True,
                          help="a store accepts new content")
    writable.add_argument("--readonly", dest="writable", action="store_const", const=False,
                          help="a store serves what it holds but takes no new content")
    update.set_defaults(func=lambda args: _update(update, args))
    drain = master_command(sub, "drain", drain_peer, help="make a store read-only and copy "
                           "what it holds onto other stores (`repair status` shows the progress)")
    drain.add_argument("name", help="the store to drain")
    remove = master_command(sub, "remove", remove_peer, help="remove a peer from the registry")
    remove.add_argument("name", help="the peer to remove from the registry")
    remove.add_argument("--force", action="store_true",
                        help="even a store that holds the only counted copy of some content")


def _update(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.active is None and args.writable is None:
        parser.error("give --active/--inactive and/or --writable/--readonly")
    return run_against_master(update_peer, args)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


async def list_peers(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print one line per peer."""
    peers = await client.list_peers()
    line = "{:<16} {:<6} {:<32} {:<10} {:<8} {:<7} {}\n"
    out.write(line.format("NAME", "ROLE", "URL", "SITE", "ZONE", "ACTIVE", "WRITABLE"))
    for peer in peers:
        out.write(line.format(peer["name"], peer["role"], peer["url"], peer["site"],
                              peer["zone"], _yes(peer["active"]), _yes(peer["writable"])))
    return 0


async def update_peer(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Set the flags given on the command line."""
    flags = {name: value for name, value in (("active", args.active),
                                             ("writable", args.writable)) if value is not None}
    record = await client.update_peer(args.name, **flags)
    out.write("peer {}: active={} writable={}\n".format(
        record["name"], _yes(record["active"]), _yes(record["writable"])))
    return 0


async def drain_peer(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Drain the store."""
    record = await client.drain_peer(args.name)
    out.write("store {} drained: read-only, its content is being copied to other stores "
              "(see `stretchfs repair status`)\n".format(record["name"]))
    return 0


async def remove_peer(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Remove the peer."""
    await client.remove_peer(args.name, force=args.force)
    out.write("peer {} removed\n".format(args.name))
    return 0
