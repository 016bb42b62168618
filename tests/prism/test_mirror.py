"""Compact mirrors: packing, feed changes, expiry at read time."""

from __future__ import annotations

from stretchfs.prism.mirror import InventoryMirror, PurchaseMirror

H = "ab" * 20


def test_inventory_add_remove_round_trip() -> None:
    """Adds and removes of stores keep a sorted store tuple; the last remove drops the row."""
    mirror = InventoryMirror()
    mirror.apply({"op": "add", "hash": H, "store": "s2", "ext": "mp4", "size": 123})
    mirror.apply({"op": "add", "hash": H, "store": "s1", "ext": "mp4", "size": 123})
    mirror.apply({"op": "add", "hash": H, "store": "s1", "ext": "mp4", "size": 123})
    record = mirror.get(H)
    assert record == ("mp4", 123, ("s1", "s2")) and record.stores == ("s1", "s2")
    mirror.apply({"op": "remove", "hash": H, "store": "s2"})
    assert mirror.get(H).stores == ("s1",)
    mirror.apply({"op": "remove", "hash": H, "store": "s1"})
    assert mirror.get(H) is None and len(mirror) == 0
    mirror.apply({"op": "remove", "hash": H, "store": "s1"})
    assert mirror.get("nothex") is None


def test_inventory_values_are_packed_ints() -> None:
    """Ordinary rows are stored as one small int; huge sizes fall back to a tuple."""
    mirror = InventoryMirror()
    mirror.load_row({"hash": H, "ext": "jpg", "size": 5, "stores": ["a", "b"]})
    assert isinstance(mirror._rows[bytes.fromhex(H)], int)
    big = "cd" * 20
    mirror.load_row({"hash": big, "ext": "bin", "size": 1 << 50, "stores": ["a"]})
    assert mirror.get(big).size == 1 << 50
    assert mirror.get(H) == ("jpg", 5, ("a", "b"))


def test_purchase_expiry_is_checked_at_read_time() -> None:
    """A purchase is returned until its expiry, then dropped."""
    mirror = PurchaseMirror()
    mirror.put("T" * 64, H, "mp4", 1000, ["example.com"])
    found = mirror.get("T" * 64, 999.0)
    assert found == (H, "mp4", 1000, ("example.com",))
    assert mirror.get("T" * 64, 1000.0) is None
    assert len(mirror) == 0


def test_purchase_feed_changes() -> None:
    """Feed adds and removes apply; unknown tokens are misses."""
    mirror = PurchaseMirror()
    mirror.apply({"op": "add", "purchase": {"token": "A" * 64, "hash": H, "ext": "jpg",
                                            "expires": 50, "referrer": []}})
    assert mirror.get("A" * 64, 1.0).ext == "jpg"
    assert mirror.get("B" * 64, 1.0) is None
    mirror.apply({"op": "remove", "token": "A" * 64})
    assert mirror.get("A" * 64, 1.0) is None


def test_purchase_keys_are_short_digests() -> None:
    """Tokens are kept as 12-byte keyed digests, values as packed bytes."""
    mirror = PurchaseMirror(digest_key=b"k" * 16)
    mirror.put("T" * 64, H, "mp4", 1000, [])
    [(key, value)] = mirror._rows.items()
    assert len(key) == 12 and isinstance(value, bytes) and len(value) == 27
