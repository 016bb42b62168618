"""The ping net's Redis key names (no Twisted here: the ACL rules and tools read them)."""

from __future__ import annotations


def votes_key(prefix: str, target: str) -> str:
    """The Redis key holding the votes against `target`."""
    return "{}ping:votes:{}".format(prefix, target)


def verdicts_key(prefix: str) -> str:
    """The Redis hash of last observed verdict changes."""
    return "{}ping:verdicts".format(prefix)


def down_key(prefix: str) -> str:
    """The Redis hash of the peers a majority of their observers holds down."""
    return "{}ping:down".format(prefix)


def version_key(prefix: str) -> str:
    """The Redis counter bumped whenever the down hash changes."""
    return "{}ping:version".format(prefix)
