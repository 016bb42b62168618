"""The ping net's wire format: small fixed-size authenticated UDP packets.

Layout (big-endian, 74 bytes)::

    version  B   PACKET_VERSION
    kind     B   PING, PONG, PING_REQ or RELAY_ACK
    sender   8s  node id of the sender (first 8 bytes of SHA-256 of its name)
    receiver 8s  node id of the node the packet is meant for
    target   8s  PING_REQ / RELAY_ACK: the peer probed on someone's behalf; else zeros
    seq      Q   the sender's sequence number (starts at its boot time in µs, so
                 a restarted node never reuses one)
    echo     Q   PONG: seq of the PING answered; PING_REQ: the requester's probe id;
                 RELAY_ACK: the requester's probe id being confirmed
    stamp    d   the sender's clock (epoch seconds)
    tag      16s HMAC-SHA256 over everything above, truncated to 16 bytes

`decode` raises `BadPacket(reason)` for anything that is not a well-formed,
authentic packet meant for the decoding node; the reasons are the `dropped`
metric's labels.  Freshness (clock window) and replay checks need state and
live in `ReplayGuard`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

PACKET_VERSION = 2  # 1 had no receiver field
PING = 1
PONG = 2
PING_REQ = 3
RELAY_ACK = 4
KINDS = (PING, PONG, PING_REQ, RELAY_ACK)
KIND_NAMES = {PING: "ping", PONG: "pong", PING_REQ: "ping_req", RELAY_ACK: "relay_ack"}

_BODY = struct.Struct("!BB8s8s8sQQd")
TAG_BYTES = 16
PACKET_BYTES = _BODY.size + TAG_BYTES
NO_TARGET = b"\0" * 8
REPLAY_WINDOW = 4096
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1

DROP_REASONS = ("truncated", "oversized", "version", "kind", "forged", "wrong_receiver",
                "unknown_sender", "stale", "replayed", "self")


class BadPacket(Exception):
    """A packet that must be dropped; `reason` is one of DROP_REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Packet:
    """One decoded ping-net packet."""

    kind: int
    sender: bytes
    receiver: bytes
    target: bytes
    seq: int
    echo: int
    stamp: float


def node_id(name: str) -> bytes:
    """The 8-byte id of a peer name, as carried in packets."""
    return hashlib.sha256(name.encode("utf-8")).digest()[:8]


def derive_key(cluster_key: str) -> bytes:
    """The ping net's HMAC key, derived from the cluster key (never the key itself)."""
    return hmac.digest(cluster_key.encode("utf-8"), b"stretchfs pingnet v1", "sha256")


def encode(key: bytes, packet: Packet) -> bytes:
    """Serialise and sign `packet`."""
    body = _BODY.pack(PACKET_VERSION, packet.kind, packet.sender, packet.receiver,
                      packet.target, packet.seq, packet.echo, packet.stamp)
    return body + hmac.digest(key, body, "sha256")[:TAG_BYTES]


def decode(key: bytes, data: bytes, receiver: bytes) -> Packet:
    """Parse and authenticate `data` arriving at node id `receiver`; raises BadPacket.

    The version is checked before the size, so an older node's packets count
    as `version`, and the receiver after the HMAC, so a genuine packet meant
    for another node (replayed here) counts as `wrong_receiver`.
    """
    if not data:
        raise BadPacket("truncated")
    if data[0] != PACKET_VERSION:
        raise BadPacket("version")
    if len(data) < PACKET_BYTES:
        raise BadPacket("truncated")
    if len(data) > PACKET_BYTES:
        raise BadPacket("oversized")
    if data[1] not in KINDS:
        raise BadPacket("kind")
    body, tag = data[:_BODY.size], data[_BODY.size:]
    if not hmac.compare_digest(hmac.digest(key, body, "sha256")[:TAG_BYTES], tag):
        raise BadPacket("forged")
    _version, kind, sender, to, target, seq, echo, stamp = _BODY.unpack(body)
    if to != receiver:
        raise BadPacket("wrong_receiver")
    if stamp != stamp:  # NaN: authentic but nonsensical
        raise BadPacket("stale")
    return Packet(kind=kind, sender=sender, receiver=to, target=target, seq=seq, echo=echo,
                  stamp=stamp)


class ReplayGuard:
    """Rejects packets outside the clock window or seen before (per sender).

    Per sender it keeps the highest sequence number and a bitmap of the
    REPLAY_WINDOW numbers below it (IPsec style): constant memory per peer.
    """

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._highest: dict[bytes, int] = {}
        self._bits: dict[bytes, int] = {}

    def check(self, packet: Packet, now: float) -> None:
        """Raise BadPacket('stale'|'replayed'), else remember the packet's seq."""
        if abs(packet.stamp - now) > self._window:
            raise BadPacket("stale")
        sender, seq = packet.sender, packet.seq
        highest = self._highest.get(sender)
        if highest is None:
            self._highest[sender] = seq
            self._bits[sender] = 1
            return
        if seq > highest:
            shift = seq - highest
            bits = (self._bits[sender] << shift) | 1 if shift < REPLAY_WINDOW else 1
            self._bits[sender] = bits & _WINDOW_MASK
            self._highest[sender] = seq
            return
        offset = highest - seq
        if offset >= REPLAY_WINDOW or self._bits[sender] >> offset & 1:
            raise BadPacket("replayed")
        self._bits[sender] |= 1 << offset

    def forget(self, sender: bytes) -> None:
        """Drop what is known of `sender` (it left the registry)."""
        self._highest.pop(sender, None)
        self._bits.pop(sender, None)
