"""Batched repair copies: many small files from one store to another in one request.

The target (`POST /content/fetch-batch {from, items: [{hash, ext?}]}`) asks the
source for every item it lacks in one request (`POST /content/download-batch
{hashes}`, framed by `wire/batchframes.py`).  Then, holding each hash's lock, one
job off the reactor checks each file's SHA1, writes it to a temp file and
moves it into place, and the adds of the whole batch are journaled in one
append (one fsync) before the answer, then published to the master as usual.  Each item is answered:
`copied`, `existed` (already here: nothing changes), `missing` (the source lacks
it), `corrupt` (its bytes do not match its hash: discarded) or `failed` (this
store could not write it).  Batches are bounded: `MAX_BATCH_ITEMS` items and
`MAX_BATCH_BYTES` of files.

Durability is grouped: the temp files of a batch are written, then made
durable together (one `syncfs` of the store's filesystem on Linux instead of an
fsync per file, about 5 ms each on a busy disk), renamed into place (under the
hashes' locks, after checking that no copy is there), and the folders made
durable together the same way, all before the journal append.  A crash before
the rename leaves temp files (removed at start); after it, complete files the
next inventory sync publishes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from typing import Any, Callable, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.errors import InvalidInput, PayloadTooLarge, PeerUnavailable, StretchFSError
from stretchfs.store.content import ContentService, _shielded
from stretchfs.store.layout import StoredFile, check_ext, check_hash
from stretchfs.threads import RunBlocking
from stretchfs.wire.batchframes import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, BatchEntry, encode_entry

log = Logger()

Wanted = dict[str, "str | None"]            # hash -> ext asked for (None: the source's)


def _listed(value: object, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("{} must be a non-empty list".format(what))
    if len(value) > MAX_BATCH_ITEMS:
        raise InvalidInput("at most {} {} per batch".format(MAX_BATCH_ITEMS, what))
    return value


def parse_hashes(body: dict[str, Any]) -> list[str]:
    """The `hashes` of a download-batch body: distinct valid hashes; InvalidInput else."""
    hashes = [check_hash(value) for value in _listed(body.get("hashes"), "hashes")]
    if len(set(hashes)) != len(hashes):
        raise InvalidInput("a hash is listed twice")
    return hashes


def parse_items(body: dict[str, Any]) -> Wanted:
    """The `items` of a fetch-batch body as {hash: ext or None}; InvalidInput else."""
    wanted: Wanted = {}
    for item in _listed(body.get("items"), "items"):
        if not isinstance(item, dict):
            raise InvalidInput("each item must be an object {hash, ext}")
        sha1 = check_hash(item.get("hash"))
        ext = item.get("ext")
        if sha1 in wanted:
            raise InvalidInput("hash {} is listed twice".format(sha1))
        wanted[sha1] = None if ext is None else check_ext(ext)
    return wanted


def _answer(status: str, found: StoredFile | None = None) -> dict[str, Any]:
    if found is None:
        return {"status": status}
    return {"status": status, "ext": found.ext, "size": found.size}


class BatchCopier:
    """Both ends of a batched copy on one store."""

    def __init__(self, content: ContentService, run_blocking: RunBlocking) -> None:
        self._content = content
        self._store = content.store
        self._run_blocking = run_blocking

    # -- source --------------------------------------------------------------------
    async def serve(self, hashes: list[str]) -> bytes:
        """The framed body of `hashes` (a missing one marked so); PayloadTooLarge when
        their files add up to more than `MAX_BATCH_BYTES`."""
        return bytes(await self._run_blocking(self._read_blocking, hashes))

    def _read_blocking(self, hashes: list[str]) -> bytes:
        found = [(sha1, self._store.find(sha1)) for sha1 in hashes]
        total = sum(f.size for _, f in found if f is not None)
        if total > MAX_BATCH_BYTES:
            raise PayloadTooLarge("the files add up to {} bytes, more than {} per batch"
                                  .format(total, MAX_BATCH_BYTES))
        parts = []
        for sha1, stored in found:
            data = None
            if stored is not None:
                try:
                    with open(stored.path, "rb") as handle:
                        data = handle.read()
                except FileNotFoundError:     # removed meanwhile
                    data = None
            parts.append(encode_entry(BatchEntry(sha1, stored.ext if stored else "", data)))
        return b"".join(parts)

    # -- target --------------------------------------------------------------------
    async def fetch(self, source: object, wanted: Wanted) -> dict[str, Any]:
        """Copy `wanted` from store `source`: `{"from", "items": {hash: {"status", ...}}}`."""
        client = self._content.source_client(source)
        existing = await self._run_blocking(self._find_all, list(wanted))
        items = {sha1: _answer("existed", found) for sha1, found in existing.items()}
        missing = {sha1: ext for sha1, ext in wanted.items() if sha1 not in existing}
        if missing:
            try:
                entries = await client.download_batch(list(missing))
            except PeerUnavailable as exc:
                raise PeerUnavailable("download from {} failed: {}".format(source, exc)) \
                    from None
            received = {e.sha1: e for e in entries if e.sha1 in missing and e.data is not None}
            self._content.receiver.check_space(sum(len(e.data or b"") for e in
                                                   received.values()))
            items.update(await _shielded(Deferred.fromCoroutine(
                self._commit(str(source), missing, received))))
        return {"from": source, "items": items}

    def _find_all(self, hashes: list[str]) -> dict[str, StoredFile]:
        found = {sha1: self._store.find(sha1) for sha1 in hashes}
        return {sha1: stored for sha1, stored in found.items() if stored is not None}

    async def _commit(self, source: str, wanted: Wanted,
                      received: dict[str, BatchEntry]) -> dict[str, Any]:
        content = self._content
        async with content.changing(list(received)):
            items, stored = await self._run_blocking(self._write_blocking, wanted, received)
            if stored:
                await content.publisher.record([
                    {"op": "add", "hash": s.sha1, "ext": s.ext, "size": s.size}
                    for s in stored])
        stats = content.stats
        stats.puts += len(stored)
        stats.bytes_received += sum(s.size for s in stored)
        if stats.files is not None:
            stats.files += len(stored)
        counts = [entry["status"] for entry in items.values()]
        log.info("fetched {copied} of {count} content from {source} in one batch ({corrupt} "
                 "corrupt, {missing} missing there, {failed} failed)", copied=len(stored),
                 count=len(wanted), source=source, corrupt=counts.count("corrupt"),
                 missing=counts.count("missing"), failed=counts.count("failed"))
        return items

    def _write_blocking(self, wanted: Wanted, received: dict[str, BatchEntry]
                        ) -> tuple[dict[str, Any], list[StoredFile]]:
        """Verify and write each received file, make them durable together, then move them
        into place and make that durable (executor thread, holding the hashes' locks)."""
        items: dict[str, Any] = {}
        written: list[tuple[str, str, str]] = []        # (sha1, ext, temp path)
        try:
            for sha1, ext in wanted.items():
                entry = received.get(sha1)
                status = self._check(sha1, entry)
                if status is not None:
                    items[sha1] = _answer(status)
                    continue
                assert entry is not None and entry.data is not None
                try:
                    written.append((sha1, ext or check_ext(entry.ext),
                                    self._write_temp(entry.data)))
                except StretchFSError:            # the source named an invalid extension
                    items[sha1] = _answer("corrupt")
                except OSError as exc:
                    log.error("batch copy of {sha1} failed: {error}", sha1=sha1,
                              error=str(exc))
                    items[sha1] = _answer("failed")
            stored = self._place(written, items)
        finally:
            for _, _, path in written:
                _unlink_quietly(path)
        return items, stored

    def _check(self, sha1: str, entry: BatchEntry | None) -> str | None:
        """Why a received entry cannot be kept (missing, corrupt), or None."""
        if entry is None or entry.data is None:
            return "missing"
        if hashlib.sha1(entry.data).hexdigest() != sha1:
            log.warn("batch copy of {sha1}: the source's bytes do not match, discarded",
                     sha1=sha1)
            return "corrupt"
        return None

    def _write_temp(self, data: bytes) -> str:
        path = self._store.new_temp_path()
        try:
            with open(path, "xb") as handle:
                handle.write(data)
        except OSError:
            _unlink_quietly(path)
            raise
        return path

    def _place(self, written: list[tuple[str, str, str]],
               items: dict[str, Any]) -> list[StoredFile]:
        """Group fsync of the temp files, a rename of each into place (unless the content
        is already there), then a group fsync of the folders; the files created."""
        stored: list[StoredFile] = []
        if not written:
            return stored
        store = self._store
        self._sync([path for _, _, path in written], [])
        for sha1, ext, path in written:
            existing = store.find(sha1)
            if existing is not None:
                items[sha1] = _answer("existed", existing)
                continue
            folder = store.folder_for(sha1)
            os.makedirs(folder, exist_ok=True)
            os.rename(path, store.path_for(sha1, ext))
            found = store.stat_file(sha1, ext)
            assert found is not None
            items[sha1] = _answer("copied", found)
            stored.append(found)
        folders = {store.folder_for(s.sha1) for s in stored}
        self._sync([], sorted(folders | {os.path.dirname(f) for f in folders} |
                              {store.content_dir}))
        return stored

    def _sync(self, files: list[str], folders: list[str]) -> None:
        """Make `files` and `folders` durable: one `syncfs` of the store's filesystem
        (Linux), else an fsync of each."""
        if _SYNCFS is not None:
            fd = os.open(self._store.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _SYNCFS(fd) == 0:
                    return
            finally:
                os.close(fd)
        for path in files + folders:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux syncfs(fd): everything written to that filesystem, durable, in one call."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


_SYNCFS = _load_syncfs()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
