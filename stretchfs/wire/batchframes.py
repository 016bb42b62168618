"""The body of `POST /content/download-batch`: many small files in one answer.

Each entry is one JSON header line, then its bytes:
`{"hash": H, "ext": E, "size": N}\\n` followed by exactly N bytes, or
`{"hash": H, "missing": true}\\n` (no bytes) for a hash the source lacks.
Used between stores for batched repair copies (`store/batch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stretchfs.web.jsonio import decode_json, encode_json

MAX_BATCH_ITEMS = 1000
MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 1024


@dataclass(frozen=True)
class BatchEntry:
    """One file of a batch: its bytes, or `data` None when the source lacks it."""

    sha1: str
    ext: str
    data: bytes | None


def encode_entry(entry: BatchEntry) -> bytes:
    """The header line and bytes of one entry."""
    if entry.data is None:
        return encode_json({"hash": entry.sha1, "missing": True}) + b"\n"
    header = {"hash": entry.sha1, "ext": entry.ext, "size": len(entry.data)}
    return encode_json(header) + b"\n" + entry.data


def parse_entries(body: bytes, max_items: int = MAX_BATCH_ITEMS) -> list[BatchEntry]:
    """The entries of a batch body; ValueError naming what is malformed."""
    entries: list[BatchEntry] = []
    at = 0
    while at < len(body):
        if len(entries) >= max_items:
            raise ValueError("more than {} entries".format(max_items))
        end = body.find(b"\n", at, at + MAX_HEADER_BYTES)
        if end < 0:
            raise ValueError("entry header without end at byte {}".format(at))
        header = decode_json(body[at:end])
        if not isinstance(header, dict) or not isinstance(header.get("hash"), str):
            raise ValueError("entry header without hash at byte {}".format(at))
        at = end + 1
        if header.get("missing") is True:
            entries.append(BatchEntry(header["hash"], "", None))
            continue
        size, ext = header.get("size"), header.get("ext")
        if not isinstance(size, int) or size < 0 or not isinstance(ext, str):
            raise ValueError("entry header without size or ext at byte {}".format(at))
        if at + size > len(body):
            raise ValueError("entry of {} cut short".format(header["hash"]))
        entries.append(BatchEntry(header["hash"], ext, body[at:at + size]))
        at += size
    return entries
