"""Checks of client input for the master's routes: each raises InvalidInput.

Identifier formats come from `stretchfs.wire.identifiers`, shared by every role.
"""

from __future__ import annotations

import re
from typing import Any

from stretchfs.errors import InvalidInput
from stretchfs.wire import identifiers

CURSOR_RE = re.compile(r"^(\d{1,20})-(\d{1,20})\Z")
MAX_TEXT = 255


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...],
          default: Any = ...) -> Any:
    """`body[name]` checked to be `kind` (bools are never numbers)."""
    if name not in body or body[name] is None:
        if default is ...:
            raise InvalidInput("missing field '{}'".format(name))
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidInput("field '{}' has the wrong type".format(name))
    if not isinstance(value, kinds):
        raise InvalidInput("field '{}' has the wrong type".format(name))
    return value


def peer_name(value: Any, what: str = "name") -> str:
    """A peer name: lowercase letters, digits and '-'."""
    if not identifiers.is_node_name(value):
        raise InvalidInput("'{}' must be lowercase letters, digits and '-' (1-63)".format(what))
    return value


def sha1(value: Any) -> str:
    """A content id: 40 lowercase hex digits."""
    if not identifiers.is_sha1(value):
        raise InvalidInput("'hash' must be 40 lowercase hex digits (SHA1)")
    return value


def content_hash(body: dict[str, Any]) -> str:
    """The content id of a body, given as `hash` or `sha1`."""
    value = body.get("hash", body.get("sha1"))
    if value is None:
        raise InvalidInput("missing field 'hash'")
    return sha1(value)


def extension(value: Any) -> str:
    """A file extension: 1-10 lowercase letters or digits."""
    if not identifiers.is_extension(value):
        raise InvalidInput("'ext' must be 1-10 lowercase letters or digits")
    return value


def size(value: Any) -> int:
    """A size in bytes: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**63:
        raise InvalidInput("'size' must be a non-negative integer")
    return value


def token(value: Any, what: str = "token") -> str:
    """A purchase token: 64 letters or digits."""
    if not identifiers.is_purchase_token(value):
        raise InvalidInput("'{}' must be 64 letters or digits".format(what))
    return value


def username(value: Any) -> str:
    """A username: letters, digits, '_', '.', '@', '-' (1-64)."""
    if not identifiers.is_username(value):
        raise InvalidInput("'username' must be 1-64 letters, digits, '_', '.', '@' or '-'")
    return value


def text(value: Any, what: str, max_len: int = MAX_TEXT) -> str:
    """A short string."""
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidInput("'{}' must be a string of at most {} characters".format(what, max_len))
    return value


def cursor(value: Any) -> str:
    """A feed cursor: a stream id "<ms>-<seq>" (normalised)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise InvalidInput("'after' must be a feed cursor like '0-0'")
    match = CURSOR_RE.match(value.strip())
    if not match:
        raise InvalidInput("'after' must be a feed cursor like '0-0'")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms >= 2**64 or seq >= 2**64:
        raise InvalidInput("'after' must be a feed cursor like '0-0'")
    return "{}-{}".format(ms, seq)


def number(value: Any, what: str, low: float, high: float) -> float:
    """A number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise InvalidInput("'{}' must be a number from {} to {}".format(what, low, high))
    return float(value)


def query_arg(request: Any, name: str) -> str | None:
    """A query-string argument as text, or None."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("'{}' is not valid UTF-8".format(name)) from None


def query_number(request: Any, name: str, default: float, low: float, high: float) -> float:
    """A numeric query argument in [low, high], `default` when absent."""
    raw = query_arg(request, name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput("'{}' must be a number".format(name)) from None
    if value != value or not low <= value <= high:
        raise InvalidInput("'{}' must be a number from {} to {}".format(name, low, high))
    return value
