"""`stretchfs purchase prune`: remove expired purchases now (parser in cli/content.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from stretchfs.wire.master import MasterClient


async def prune_purchases(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Ask the master to prune; print how many purchases went."""
    answer = await client.prune_purchases()
    out.write("pruned {} expired purchase(s)\n".format(answer["pruned"]))
    return 0
