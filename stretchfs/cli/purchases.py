"""`stretchfs purchase prune`: remove expired purchases now."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from stretchfs.master.cliconn import add_master_arguments, run_against_master


def add_parser(subparsers: Any) -> None:
    """Register `purchase` and its subcommands."""
    purchase = subparsers.add_parser("purchase", help="manage purchases (through the master)")
    sub = purchase.add_subparsers(dest="purchase_command", required=True)
    prune = sub.add_parser("prune", help="remove expired purchases now")
    add_master_arguments(prune)
    prune.set_defaults(func=lambda args: run_against_master(prune_purchases, args))


async def prune_purchases(client: Any, args: argparse.Namespace, out: TextIO) -> int:
    """Ask the master to prune; print how many purchases went."""
    answer = await client.prune_purchases()
    out.write("pruned {} expired purchase(s)\n".format(answer["pruned"]))
    return 0
