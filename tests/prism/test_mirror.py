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


def test_inventory_overflow_rows_round_trip() -> None:
    """Rows that do not fit the packed form (huge sizes) are still answered exactly."""
    mirror = InventoryMirror()
    mirror.load_row({"hash": H, "ext": "jpg", "size": 5, "stores": ["a", "b"]})
    big = "cd" * 20
    mirror.load_row({"hash": big, "ext": "bin", "size": 1 << 50, "stores": ["a"]})
    assert mirror.get(big).size == 1 << 50
    assert mirror.get(H) == ("jpg", 5, ("a", "b"))
    mirror.remove(big, "a")
    assert mirror.get(big) is None and mirror._overflow == {}


def test_packed_table_inserts_replaces_and_deletes() -> None:
    """Many inserts, replacements and deletes keep every live key findable."""
    from stretchfs.prism.mirror import PackedTable

    table = PackedTable(4, 2, bucket_bits=4)
    for _round in range(3):
        for i in range(5000):
            table.put(i.to_bytes(4, "big"), (i % 65536).to_bytes(2, "big"))
        for i in range(0, 5000, 2):
            assert table.delete(i.to_bytes(4, "big"))
        assert len(table) == 2500
        for i in range(5000):
            found = table.get(i.to_bytes(4, "big"))
            assert found == (None if i % 2 == 0 else (i % 65536).to_bytes(2, "big"))
    table.put((7).to_bytes(4, "big"), b"zz")
    assert table.get((7).to_bytes(4, "big")) == b"zz" and len(table) == 2500
    assert len(dict(table.items())) == 2500
    assert not table.delete(b"zzzz")


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


def test_purchase_answers_its_owner_only_when_one_is_named() -> None:
    """Asked for a user, the mirror finds only that user's purchases; unowned ones nobody's."""
    mirror = PurchaseMirror()
    mirror.put("T" * 64, H, "mp4", 1000, [], owner="alice")
    mirror.load_row({"token": "L" * 64, "hash": H, "ext": "mp4", "expires": 1000,
                     "session": "S" * 64})
    mirror.put("O" * 64, H, "mp4", 2 ** 33, [], owner="alice")  # overflow form
    assert mirror.get("T" * 64, 1.0, "alice") == mirror.get("T" * 64, 1.0)
    assert mirror.get("O" * 64, 1.0, "alice") == mirror.get("O" * 64, 1.0)
    assert mirror.get("T" * 64, 1.0, "bob") is None and mirror.get("O" * 64, 1.0, "bob") is None
    assert mirror.get("L" * 64, 1.0) is not None and mirror.get("L" * 64, 1.0, "") is None
    assert mirror.get("L" * 64, 1.0, "alice") is None


def test_purchase_keys_are_short_digests() -> None:
    """Tokens are kept as 12-byte keyed digests, values as packed bytes."""
    mirror = PurchaseMirror(digest_key=b"k" * 16)
    mirror.put("T" * 64, H, "mp4", 1000, [])
    [(key, value)] = list(mirror._rows.items())
    assert len(key) == 12 and len(value) == 35
