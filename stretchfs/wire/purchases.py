"""What a purchase request is: one parser for the prism that takes it and the master
that keeps it, so they cannot disagree.

`hash` (or `sha1`); `ext` (absent: the prism uses the stored one, the master
refuses); `life` seconds, 1 to ten years; `referrer` host patterns, at most 100
of 1-255 characters and 16 KiB of JSON (every purchase goes to every prism),
one string a list of one, null or "" none; `ip` at most 64 characters.  Public
requests (`public=True`, the prism) also take hash and ext in any case and
`life` as digits, and pass them on in canonical form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from stretchfs.errors import InvalidInput
from stretchfs.wire.identifiers import is_extension, is_sha1, public_sha1

MAX_LIFE_SECONDS = 10 * 365 * 86400
MAX_REFERRERS = 100
MAX_REFERRER_CHARS = 255
MAX_REFERRER_BYTES = 16 * 1024
MAX_IP_CHARS = 64


@dataclass(frozen=True)
class PurchaseRequest:
    """A checked purchase request, in canonical form."""

    sha1: str
    ext: str | None
    life: int | float
    referrer: list[str]
    ip: str


def parse_purchase_request(body: Mapping[str, Any], *, default_life: float,
                           default_ip: str = "", public: bool = False) -> PurchaseRequest:
    """The purchase request of a create body; InvalidInput names the first bad field."""
    raw_hash = body.get("hash", body.get("sha1"))
    ext = body.get("ext")
    life = body.get("life")
    if public:
        raw_hash = public_sha1(raw_hash)
        ext = ext.lower() if isinstance(ext, str) else ext
        life = int(life) if isinstance(life, str) and life.strip().isdigit() else life
    if not is_sha1(raw_hash):
        raise InvalidInput("'hash' must be a SHA1 (40 hex digits)")
    if ext is not None and not is_extension(ext):
        raise InvalidInput("'ext' must be 1-10 lowercase letters or digits")
    ip = default_ip if body.get("ip") is None else body["ip"]
    if not isinstance(ip, str) or len(ip) > MAX_IP_CHARS:
        raise InvalidInput("'ip' must be an address of at most {} characters".format(
            MAX_IP_CHARS))
    return PurchaseRequest(raw_hash, ext, _life(default_life if life is None else life),
                           _referrer(body.get("referrer")), ip)


def _life(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 1 <= value <= MAX_LIFE_SECONDS:
        raise InvalidInput("'life' must be a number of seconds from 1 to {}".format(
            MAX_LIFE_SECONDS))
    return int(value) if value == int(value) else float(value)


def _referrer(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list) or len(patterns) > MAX_REFERRERS or not all(
            isinstance(p, str) and 0 < len(p) <= MAX_REFERRER_CHARS for p in patterns):
        raise InvalidInput("'referrer' must be a list of at most {} host patterns of 1-{} "
                           "characters".format(MAX_REFERRERS, MAX_REFERRER_CHARS))
    if len(json.dumps(patterns)) > MAX_REFERRER_BYTES:
        raise InvalidInput("'referrer' larger than {} bytes of JSON".format(MAX_REFERRER_BYTES))
    return patterns
