"""Compact in-memory mirrors of the master's inventory and purchase databases.

Every prism holds all of both, so the layout is chosen for memory: each
mirror is a `PackedTable` of fixed-size records packed into bucket byte
strings (no Python object per entry):

* inventory: key = the 20-byte binary SHA1; value = 8 bytes packing
  `size << 24 | store-set id << 8 | ext id`, where the ext and the (sorted)
  tuple of store names are interned in small tables.  The rare entry that
  does not fit (size >= 1 TiB, more than 255 exts or 65535 store sets) lives
  in a small side dict.
* purchases: key = a 12-byte keyed BLAKE2b digest of the token (the key is
  random per process, so nobody can aim for a collision); value = packed
  bytes `sha1(20) expires(u32) ext id(u8) referrer-set id(u16) owner(8)`,
  the owner being an 8-byte keyed digest of the buyer's user name (zeros:
  nobody's), enough to answer the buyer alone while the master is away.
  Everything else about a purchase (ip, life) is the master's to answer.

Roughly 30 bytes per inventory entry and 53 per purchase at a million each.
Purchases expire at read time against the caller's `now`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any, Generic, Iterable, Iterator, NamedTuple, TypeVar

V = TypeVar("V")

_PURCHASE = struct.Struct(">20sIBH8s")
TOKEN_DIGEST_BYTES = 12
OWNER_DIGEST_BYTES = 8
NO_OWNER = bytes(OWNER_DIGEST_BYTES)
_INV_OVERFLOW = b"\xff" * 8
_SIZE_LIMIT = 1 << 40


class PackedTable:
    """key -> value for fixed-size byte strings, without a Python object per entry.

    Entries are spread over `2**bucket_bits` buckets by Python's `hash()` of
    the key (SipHash, seeded per process, so crafted keys cannot pile up in
    one bucket).  A bucket is one bytes object holding its records
    (key + value) back to back; a lookup is a dict lookup plus a `find` in a
    few hundred bytes, both in C.  At a million entries a bucket holds about
    15 records and the whole table costs little more than the records.
    """

    def __init__(self, key_size: int, value_size: int, bucket_bits: int = 16) -> None:
        self._k = key_size
        self._size = key_size + value_size
        self._mask = (1 << bucket_bits) - 1
        self._buckets: dict[int, bytes] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _locate(self, blob: bytes, key: bytes) -> int:
        """Offset of the record of `key` in `blob`, -1 when absent."""
        size = self._size
        pos = blob.find(key)
        while pos >= 0 and pos % size:
            pos = blob.find(key, pos + 1)
        return pos

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        blob = self._buckets.get(hash(key) & self._mask)
        if blob is None:
            return None
        pos = self._locate(blob, key)
        if pos < 0:
            return None
        return blob[pos + self._k:pos + self._size]

    def put(self, key: bytes, value: bytes) -> None:
        """Insert or replace `key`."""
        bucket = hash(key) & self._mask
        blob = self._buckets.get(bucket)
        if blob is None:
            self._buckets[bucket] = key + value
            self._count += 1
            return
        pos = self._locate(blob, key)
        if pos < 0:
            self._buckets[bucket] = blob + key + value
            self._count += 1
        else:
            start = pos + self._k
            self._buckets[bucket] = blob[:start] + value + blob[pos + self._size:]

    def delete(self, key: bytes) -> bool:
        """Remove `key`; True if it was there."""
        bucket = hash(key) & self._mask
        blob = self._buckets.get(bucket)
        if blob is None:
            return False
        pos = self._locate(blob, key)
        if pos < 0:
            return False
        rest = blob[:pos] + blob[pos + self._size:]
        if rest:
            self._buckets[bucket] = rest
        else:
            del self._buckets[bucket]
        self._count -= 1
        return True

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value)."""
        size, klen = self._size, self._k
        for blob in self._buckets.values():
            for pos in range(0, len(blob), size):
                yield blob[pos:pos + klen], blob[pos + klen:pos + size]


class _Interner(Generic[V]):
    """Two-way table of small ids for repeated values (exts, store sets)."""

    def __init__(self, limit: int) -> None:
        self._ids: dict[V, int] = {}
        self._values: list[V] = []
        self._limit = limit

    def id_for(self, value: V) -> int | None:
        """The id of `value`, allocating one; None when the table is full."""
        found = self._ids.get(value)
        if found is not None:
            return found
        if len(self._values) >= self._limit:
            return None
        self._ids[value] = len(self._values)
        self._values.append(value)
        return len(self._values) - 1

    def value(self, ident: int) -> V:
        """The value of id `ident`."""
        return self._values[ident]


class InventoryRecord(NamedTuple):
    """What the mirror knows of one content."""

    ext: str
    size: int                  # bytes
    stores: tuple[str, ...]    # names of the stores that hold a copy, sorted


class InventoryMirror:
    """hash -> (ext, size, stores), kept compact."""

    def __init__(self) -> None:
        self._rows = PackedTable(20, 8)
        self._overflow: dict[bytes, tuple[str, int, tuple[str, ...]]] = {}
        self._exts: _Interner[str] = _Interner(255)
        self._sets: _Interner[tuple[str, ...]] = _Interner(65535)

    def __len__(self) -> int:
        return len(self._rows)

    def _store(self, key: bytes, ext: str, size: int, stores: tuple[str, ...]) -> None:
        ext_id = self._exts.id_for(ext)
        set_id = self._sets.id_for(stores)
        if ext_id is None or set_id is None or not 0 <= size < _SIZE_LIMIT:
            self._overflow[key] = (ext, size, stores)
            self._rows.put(key, _INV_OVERFLOW)
            return
        if self._overflow:
            self._overflow.pop(key, None)
        self._rows.put(key, ((size << 24) | (set_id << 8) | ext_id).to_bytes(8, "little"))

    def _record(self, key: bytes) -> InventoryRecord | None:
        value = self._rows.get(key)
        if value is None:
            return None
        if value == _INV_OVERFLOW:
            return InventoryRecord(*self._overflow[key])
        packed = int.from_bytes(value, "little")
        return InventoryRecord(self._exts.value(packed & 0xFF),
                               packed >> 24, self._sets.value((packed >> 8) & 0xFFFF))

    def get(self, sha1: str) -> InventoryRecord | None:
        """The record of `sha1` (40 hex), None when no store holds it."""
        try:
            key = bytes.fromhex(sha1)
        except ValueError:
            return None
        if len(key) != 20:
            return None
        return self._record(key)

    def _drop(self, key: bytes) -> None:
        self._rows.delete(key)
        if self._overflow:
            self._overflow.pop(key, None)

    def set_row(self, sha1: str, ext: str, size: int, stores: Iterable[str]) -> None:
        """Replace the record of `sha1` (a snapshot row); no stores removes it."""
        key = bytes.fromhex(sha1)
        names = tuple(stores)
        if len(names) > 1:
            names = tuple(sorted(set(names)))
        if not names:
            self._drop(key)
            return
        self._store(key, ext, int(size), names)

    def add(self, sha1: str, store: str, ext: str, size: int) -> None:
        """`store` now holds `sha1` (idempotent)."""
        key = bytes.fromhex(sha1)
        old = self._record(key)
        if old is None:
            self._store(key, ext, int(size), (store,))
        elif store not in old.stores:
            self._store(key, old.ext, old.size, tuple(sorted(old.stores + (store,))))

    def remove(self, sha1: str, store: str, ext: str | None = None,
               size: int | None = None) -> None:
        """`store` no longer holds `sha1` (idempotent); `ext`/`size`, when the master
        sends them, describe the copies left."""
        key = bytes.fromhex(sha1)
        old = self._record(key)
        if old is None or store not in old.stores:
            return
        rest = tuple(s for s in old.stores if s != store)
        if rest:
            self._store(key, ext or old.ext, old.size if size is None else int(size), rest)
        else:
            self._drop(key)

    def apply(self, change: dict[str, Any]) -> None:
        """Apply one feed change `{"op": "add"|"remove", "hash", "store", ...}`."""
        op = change.get("op")
        if op == "add":
            self.add(change["hash"], change["store"], change.get("ext") or "bin",
                     int(change.get("size") or 0))
        elif op == "remove":
            self.remove(change["hash"], change["store"], change.get("ext"), change.get("size"))

    def load_row(self, row: dict[str, Any]) -> None:
        """Apply one snapshot row `{"hash", "ext", "size", "stores"}`."""
        self.set_row(row["hash"], row.get("ext") or "bin", int(row.get("size") or 0),
                     row.get("stores") or ())


class PurchaseRecord(NamedTuple):
    """What delivery needs of a purchase."""

    sha1: str
    ext: str
    expires: int                 # epoch second after which the purchase is void
    referrer: tuple[str, ...]    # allowed referrer host patterns (empty: any)


class PurchaseMirror:
    """token -> (sha1, ext, expires, referrer) and its owner, kept compact."""

    def __init__(self, digest_key: bytes | None = None) -> None:
        self._rows = PackedTable(TOKEN_DIGEST_BYTES, _PURCHASE.size)
        self._overflow: dict[bytes, tuple[str, str, int, tuple[str, ...], bytes]] = {}
        self._key = digest_key if digest_key is not None else os.urandom(16)
        self._exts: _Interner[str] = _Interner(255)
        self._refs: _Interner[tuple[str, ...]] = _Interner(65535)

    def __len__(self) -> int:
        return len(self._rows)

    def _digest(self, token: str) -> bytes:
        return hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=TOKEN_DIGEST_BYTES,
                               key=self._key).digest()

    def _owner(self, username: str | None) -> bytes:
        if not username:
            return NO_OWNER
        return hashlib.blake2b(username.encode("utf-8", "replace"),
                               digest_size=OWNER_DIGEST_BYTES, key=self._key,
                               person=b"owner").digest()

    def put(self, token: str, sha1: str, ext: str, expires: float,
            referrer: Iterable[str], owner: str | None = None) -> None:
        """Add or replace the purchase of `token` (made by user `owner`; None: nobody)."""
        key = self._digest(token)
        owned_by = self._owner(owner)
        refs = tuple(referrer) if referrer else ()
        if refs and not all(isinstance(r, str) for r in refs):
            refs = tuple(str(r) for r in refs)
        ext_id = self._exts.id_for(ext)
        ref_id = self._refs.id_for(refs)
        deadline = int(expires)
        digest = bytes.fromhex(sha1)
        if ext_id is None or ref_id is None or not 0 <= deadline < 1 << 32 or len(digest) != 20:
            self._overflow[key] = (sha1, ext, deadline, refs, owned_by)
            self._rows.put(key, _PURCHASE.pack(b"", 0, 255, 65535, owned_by))
            return
        if self._overflow:
            self._overflow.pop(key, None)
        self._rows.put(key, _PURCHASE.pack(digest, deadline, ext_id, ref_id, owned_by))

    def get(self, token: str, now: float, owner: str | None = None) -> PurchaseRecord | None:
        """The unexpired purchase of `token`; an expired one is dropped.

        Given `owner`, a purchase of anyone else (or of nobody) is None too.
        """
        key = self._digest(token)
        value = self._rows.get(key)
        if value is None:
            return None
        digest, deadline, ext_id, ref_id, owned_by = _PURCHASE.unpack(value)
        if ext_id == 255 and ref_id == 65535:
            record = PurchaseRecord(*self._overflow[key][:4])
        else:
            record = PurchaseRecord(digest.hex(), self._exts.value(ext_id), deadline,
                                    self._refs.value(ref_id))
        if record.expires <= now:
            self._rows.delete(key)
            self._overflow.pop(key, None)
            return None
        if owner is not None and (owned_by == NO_OWNER or owned_by != self._owner(owner)):
            return None
        return record

    def remove(self, token: str) -> None:
        """Forget the purchase of `token` (idempotent)."""
        key = self._digest(token)
        self._rows.delete(key)
        if self._overflow:
            self._overflow.pop(key, None)

    def load_row(self, row: dict[str, Any]) -> None:
        """Add one purchase as the master serialises it."""
        self.put(row["token"], row["hash"], row.get("ext") or "bin",
                 float(row.get("expires") or 0), row.get("referrer") or (), row.get("owner"))

    def apply(self, change: dict[str, Any]) -> None:
        """Apply one feed change `{"op": "add", "purchase"}` / `{"op": "remove", "token"}`."""
        op = change.get("op")
        if op == "add" and isinstance(change.get("purchase"), dict):
            self.load_row(change["purchase"])
        elif op == "remove":
            self.remove(str(change.get("token", "")))
