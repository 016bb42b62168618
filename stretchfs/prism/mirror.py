"""Compact in-memory mirrors of the master's inventory and purchase databases.

Every prism holds all of both, so the layout is chosen for memory:

* inventory: key = the 20-byte binary SHA1; value = one int packing
  `size << 23 | store-set id << 8 | ext id`, where the ext and the (sorted)
  tuple of store names are interned in small tables.  An entry that does not
  fit (huge size, table full) keeps a plain `(ext, size, stores)` tuple.
* purchases: key = a 12-byte keyed BLAKE2b digest of the token (the key is
  random per process, so nobody can aim for a collision); value = packed
  bytes `sha1(20) expires(u32) ext id(u8) referrer-set id(u16)`.  Everything
  else about a purchase (ip, life, owner) is the master's to answer.

Purchases expire at read time against the caller's `now`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any, Iterable

EXT_BITS = 8
SET_BITS = 15
SIZE_SHIFT = EXT_BITS + SET_BITS
MAX_PACKED_SIZE = (1 << (60 - SIZE_SHIFT)) - 1
_PURCHASE = struct.Struct(">20sIBH")
TOKEN_DIGEST_BYTES = 12


class _Interner:
    """Two-way table of small ids for repeated values (exts, store sets)."""

    def __init__(self, limit: int) -> None:
        self._ids: dict[Any, int] = {}
        self._values: list[Any] = []
        self._limit = limit

    def id_for(self, value: Any) -> int | None:
        """The id of `value`, allocating one; None when the table is full."""
        found = self._ids.get(value)
        if found is not None:
            return found
        if len(self._values) >= self._limit:
            return None
        self._ids[value] = len(self._values)
        self._values.append(value)
        return len(self._values) - 1

    def value(self, ident: int) -> Any:
        """The value of id `ident`."""
        return self._values[ident]


class InventoryRecord(tuple):
    """(ext, size, stores): what the mirror knows of one content."""

    __slots__ = ()

    def __new__(cls, ext: str, size: int, stores: tuple[str, ...]) -> "InventoryRecord":
        return tuple.__new__(cls, (ext, size, stores))

    @property
    def ext(self) -> str:
        """Extension of the content."""
        return self[0]

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self[1]

    @property
    def stores(self) -> tuple[str, ...]:
        """Names of the stores that hold a copy, sorted."""
        return self[2]


class InventoryMirror:
    """hash -> (ext, size, stores), kept compact."""

    def __init__(self) -> None:
        self._rows: dict[bytes, Any] = {}
        self._exts = _Interner(1 << EXT_BITS)
        self._sets = _Interner(1 << SET_BITS)

    def __len__(self) -> int:
        return len(self._rows)

    def _pack(self, ext: str, size: int, stores: tuple[str, ...]) -> Any:
        ext_id = self._exts.id_for(ext)
        set_id = self._sets.id_for(stores)
        if ext_id is None or set_id is None or not 0 <= size <= MAX_PACKED_SIZE:
            return (ext, size, stores)
        return (size << SIZE_SHIFT) | (set_id << EXT_BITS) | ext_id

    def _unpack(self, value: Any) -> InventoryRecord:
        if isinstance(value, tuple):
            return InventoryRecord(*value)
        ext = self._exts.value(value & ((1 << EXT_BITS) - 1))
        stores = self._sets.value((value >> EXT_BITS) & ((1 << SET_BITS) - 1))
        return InventoryRecord(ext, value >> SIZE_SHIFT, stores)

    def get(self, sha1: str) -> InventoryRecord | None:
        """The record of `sha1` (40 hex), None when no store holds it."""
        try:
            key = bytes.fromhex(sha1)
        except ValueError:
            return None
        value = self._rows.get(key)
        return None if value is None else self._unpack(value)

    def set_row(self, sha1: str, ext: str, size: int, stores: Iterable[str]) -> None:
        """Replace the record of `sha1` (a snapshot row); no stores removes it."""
        key = bytes.fromhex(sha1)
        names = tuple(sorted(set(stores)))
        if not names:
            self._rows.pop(key, None)
            return
        self._rows[key] = self._pack(ext, int(size), names)

    def add(self, sha1: str, store: str, ext: str, size: int) -> None:
        """`store` now holds `sha1` (idempotent)."""
        key = bytes.fromhex(sha1)
        value = self._rows.get(key)
        if value is None:
            self._rows[key] = self._pack(ext, int(size), (store,))
            return
        old = self._unpack(value)
        if store in old.stores:
            return
        self._rows[key] = self._pack(old.ext, old.size, tuple(sorted(old.stores + (store,))))

    def remove(self, sha1: str, store: str) -> None:
        """`store` no longer holds `sha1` (idempotent)."""
        key = bytes.fromhex(sha1)
        value = self._rows.get(key)
        if value is None:
            return
        old = self._unpack(value)
        if store not in old.stores:
            return
        rest = tuple(s for s in old.stores if s != store)
        if rest:
            self._rows[key] = self._pack(old.ext, old.size, rest)
        else:
            del self._rows[key]

    def apply(self, change: dict[str, Any]) -> None:
        """Apply one feed change `{"op": "add"|"remove", "hash", "store", ...}`."""
        op = change.get("op")
        if op == "add":
            self.add(change["hash"], change["store"], change.get("ext") or "bin",
                     int(change.get("size") or 0))
        elif op == "remove":
            self.remove(change["hash"], change["store"])

    def load_row(self, row: dict[str, Any]) -> None:
        """Apply one snapshot row `{"hash", "ext", "size", "stores"}`."""
        self.set_row(row["hash"], row.get("ext") or "bin", int(row.get("size") or 0),
                     row.get("stores") or ())


class PurchaseRecord(tuple):
    """(sha1, ext, expires, referrer): what delivery needs of a purchase."""

    __slots__ = ()

    def __new__(cls, sha1: str, ext: str, expires: int,
                referrer: tuple[str, ...]) -> "PurchaseRecord":
        return tuple.__new__(cls, (sha1, ext, expires, referrer))

    @property
    def sha1(self) -> str:
        """Hash of the purchased content."""
        return self[0]

    @property
    def ext(self) -> str:
        """Extension of the purchased content."""
        return self[1]

    @property
    def expires(self) -> int:
        """Epoch second after which the purchase is void."""
        return self[2]

    @property
    def referrer(self) -> tuple[str, ...]:
        """Allowed referrer host patterns (empty: any)."""
        return self[3]


class PurchaseMirror:
    """token -> (sha1, ext, expires, referrer), kept compact."""

    def __init__(self, digest_key: bytes | None = None) -> None:
        self._rows: dict[bytes, Any] = {}
        self._key = digest_key if digest_key is not None else os.urandom(16)
        self._exts = _Interner(1 << 8)
        self._refs = _Interner(1 << 16)

    def __len__(self) -> int:
        return len(self._rows)

    def _digest(self, token: str) -> bytes:
        return hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=TOKEN_DIGEST_BYTES,
                               key=self._key).digest()

    def put(self, token: str, sha1: str, ext: str, expires: float,
            referrer: Iterable[str]) -> None:
        """Add or replace the purchase of `token`."""
        refs = tuple(str(r) for r in referrer)
        ext_id = self._exts.id_for(ext)
        ref_id = self._refs.id_for(refs)
        deadline = int(expires)
        if ext_id is None or ref_id is None or not 0 <= deadline < 1 << 32:
            value: Any = (sha1, ext, deadline, refs)
        else:
            value = _PURCHASE.pack(bytes.fromhex(sha1), deadline, ext_id, ref_id)
        self._rows[self._digest(token)] = value

    def get(self, token: str, now: float) -> PurchaseRecord | None:
        """The unexpired purchase of `token`; an expired one is dropped."""
        key = self._digest(token)
        value = self._rows.get(key)
        if value is None:
            return None
        if isinstance(value, tuple):
            record = PurchaseRecord(*value)
        else:
            digest, deadline, ext_id, ref_id = _PURCHASE.unpack(value)
            record = PurchaseRecord(digest.hex(), self._exts.value(ext_id), deadline,
                                    self._refs.value(ref_id))
        if record.expires <= now:
            del self._rows[key]
            return None
        return record

    def remove(self, token: str) -> None:
        """Forget the purchase of `token` (idempotent)."""
        self._rows.pop(self._digest(token), None)

    def load_row(self, row: dict[str, Any]) -> None:
        """Add one purchase as the master serialises it."""
        self.put(row["token"], row["hash"], row.get("ext") or "bin",
                 float(row.get("expires") or 0), row.get("referrer") or ())

    def apply(self, change: dict[str, Any]) -> None:
        """Apply one feed change `{"op": "add", "purchase"}` / `{"op": "remove", "token"}`."""
        op = change.get("op")
        if op == "add" and isinstance(change.get("purchase"), dict):
            self.load_row(change["purchase"])
        elif op == "remove":
            self.remove(str(change.get("token", "")))
