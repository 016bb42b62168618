"""Packet codec and replay guard: every kind of bad packet is refused with its reason."""

from __future__ import annotations

import pytest

from stretchfs.pingnet.packet import (
    NO_TARGET,
    PACKET_BYTES,
    PING,
    PONG,
    BadPacket,
    Packet,
    ReplayGuard,
    decode,
    derive_key,
    encode,
    node_id,
)
from tests.helpers import CLUSTER_KEY

KEY = derive_key(CLUSTER_KEY)
NOW = 1_700_000_000.0
ME = node_id("n2")


def _packet(**changes: object) -> Packet:
    values = dict(kind=PING, sender=node_id("n1"), receiver=ME, target=NO_TARGET, seq=10,
                  echo=0, stamp=NOW)
    values.update(changes)
    return Packet(**values)  # type: ignore[arg-type]


def test_round_trip() -> None:
    """An encoded packet decodes to the same fields and has the fixed size."""
    packet = _packet(kind=PONG, echo=9)
    data = encode(KEY, packet)
    assert len(data) == PACKET_BYTES
    assert decode(KEY, data, ME) == packet


@pytest.mark.parametrize("mangle,reason", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: b"", "truncated"),
    (lambda d: d + b"x", "oversized"),
    (lambda d: bytes([9]) + d[1:], "version"),
    (lambda d: d[:1] + bytes([77]) + d[2:], "kind"),
    (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "forged"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "forged"),
])
def test_bad_packets_are_refused(mangle, reason) -> None:
    """Truncated, oversized, wrong-version, unknown-kind and tampered packets raise BadPacket."""
    with pytest.raises(BadPacket) as info:
        decode(KEY, mangle(encode(KEY, _packet())), ME)
    assert info.value.reason == reason


def test_other_cluster_key_is_forged() -> None:
    """A packet signed with another cluster's key is refused as forged."""
    data = encode(derive_key("another-cluster-key-000000"), _packet())
    with pytest.raises(BadPacket) as info:
        decode(KEY, data, ME)
    assert info.value.reason == "forged"


def test_packet_for_another_node_is_refused() -> None:
    """A genuine packet is accepted by the node it names as receiver and refused
    as wrong_receiver by any other."""
    data = encode(KEY, _packet(receiver=node_id("n3")))
    assert decode(KEY, data, node_id("n3")).receiver == node_id("n3")
    with pytest.raises(BadPacket) as info:
        decode(KEY, data, ME)
    assert info.value.reason == "wrong_receiver"


def test_receiver_is_under_the_mac() -> None:
    """Rewriting the receiver field of a genuine packet makes it a forgery."""
    data = encode(KEY, _packet(receiver=node_id("n3")))
    rewritten = data[:10] + ME + data[18:]
    with pytest.raises(BadPacket) as info:
        decode(KEY, rewritten, ME)
    assert info.value.reason == "forged"


def test_previous_version_packets_are_refused_as_version() -> None:
    """A 66-byte version-1 packet (no receiver field) is refused as `version`."""
    old = bytes([1]) + encode(KEY, _packet())[1:66]
    with pytest.raises(BadPacket) as info:
        decode(KEY, old, ME)
    assert info.value.reason == "version"


def test_stale_packets_are_refused() -> None:
    """A packet stamped outside the clock window is stale."""
    guard = ReplayGuard(5.0)
    with pytest.raises(BadPacket) as info:
        guard.check(_packet(stamp=NOW - 6), NOW)
    assert info.value.reason == "stale"
    with pytest.raises(BadPacket):
        guard.check(_packet(stamp=NOW + 6), NOW)


def test_replayed_packets_are_refused() -> None:
    """The same sequence number from the same sender is accepted once."""
    guard = ReplayGuard(5.0)
    guard.check(_packet(seq=100), NOW)
    guard.check(_packet(seq=99), NOW)
    with pytest.raises(BadPacket) as info:
        guard.check(_packet(seq=100), NOW)
    assert info.value.reason == "replayed"
    guard.check(_packet(seq=100, sender=node_id("n2")), NOW)


def test_very_old_sequence_numbers_are_replays() -> None:
    """A sequence number far below the highest seen is refused even if never seen."""
    guard = ReplayGuard(5.0)
    guard.check(_packet(seq=1_000_000), NOW)
    with pytest.raises(BadPacket):
        guard.check(_packet(seq=1), NOW)


def test_restarted_sender_is_accepted() -> None:
    """A restarted sender's sequence numbers start at its boot time, above the old ones."""
    guard = ReplayGuard(5.0)
    guard.check(_packet(seq=int(NOW * 1e6) + 5), NOW)
    guard.check(_packet(seq=int((NOW + 3) * 1e6)), NOW + 3)


def test_out_of_order_packets_are_accepted_once() -> None:
    """Late packets inside the window are accepted once each, in any order."""
    guard = ReplayGuard(5.0)
    for seq in (50, 53, 51, 60, 52):
        guard.check(_packet(seq=seq), NOW)
    for seq in (50, 51, 52, 53, 60):
        with pytest.raises(BadPacket):
            guard.check(_packet(seq=seq), NOW)
    guard.check(_packet(seq=59), NOW)
