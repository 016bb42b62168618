"""Where a store keeps its bytes: `<root>/content/ab/cd/<sha1>.<ext>`.

Every path is built from a validated hash (40 lowercase hex) and extension
(`[a-z0-9]{1,10}`), never from unchecked input.  Temp files live in
`<root>/tmp` (same filesystem, so a rename is atomic) and the publish
journal in `<root>/journal`.  Every method here does blocking file I/O:
callers on the reactor thread keep it to single small operations or run it
through the injected `run_blocking`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from stretchfs.errors import InvalidInput
from stretchfs.wire.identifiers import EXT_PATTERN, EXT_RE, SHA1_PATTERN, SHA1_RE
from stretchfs.wire.signing import content_path

NAME_RE = re.compile(r"^({})\.({})\Z".format(SHA1_PATTERN, EXT_PATTERN))
HEX2_RE = re.compile(r"^[0-9a-f]{2}\Z")
TEMP_PREFIX = "put-"
LOCK_NAME = "store.lock"
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def check_hash(value: object) -> str:
    """`value` if it is a 40-hex lowercase SHA1, else InvalidInput."""
    if not isinstance(value, str) or not SHA1_RE.match(value):
        raise InvalidInput("hash must be 40 lowercase hex characters")
    return value


def check_ext(value: object) -> str:
    """`value` if it is a valid extension ([a-z0-9]{1,10}), else InvalidInput."""
    if not isinstance(value, str) or not EXT_RE.match(value):
        raise InvalidInput("ext must be 1-10 lowercase letters or digits")
    return value


def parse_name(name: str) -> tuple[str, str]:
    """Split `<sha1>.<ext>` into (sha1, ext); anything else is InvalidInput."""
    match = NAME_RE.match(name)
    if not match:
        raise InvalidInput("expected <sha1>.<ext>: 40 lowercase hex, a dot, 1-10 of [a-z0-9]")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class StoredFile:
    """One content file on disk."""

    sha1: str
    ext: str
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class DiskUsage:
    """Space on the store's filesystem, in bytes."""

    total: int
    free: int


class ContentStore:
    """The content folder of one store root (blocking file operations)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.content_dir = os.path.join(self.root, "content")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.journal_dir = os.path.join(self.root, "journal")
        self.leaving_dir = os.path.join(self.root, "leaving")

    def prepare(self) -> None:
        """Create content/, tmp/ and journal/; remove the temp files and the removed
        copies (leaving/) a crash left."""
        shutil.rmtree(self.leaving_dir, ignore_errors=True)
        for folder in (self.content_dir, self.tmp_dir, self.journal_dir):
            os.makedirs(folder, exist_ok=True)
        with os.scandir(self.tmp_dir) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)

    def lock(self) -> BinaryIO:
        """Take the root's lock (held while the returned file stays open): one
        store process or hand-run sync per root.  BlockingIOError when held."""
        handle = open(os.path.join(self.root, LOCK_NAME), "ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            handle.close()
            raise
        return handle

    # -- paths -------------------------------------------------------------
    def path_for(self, sha1: str, ext: str) -> str:
        """Absolute path of content `sha1`.`ext` (validates both)."""
        rel = content_path(check_hash(sha1), check_ext(ext))
        return self.root + rel

    def folder_for(self, sha1: str) -> str:
        """Folder that holds every file of `sha1`."""
        check_hash(sha1)
        return os.path.join(self.content_dir, sha1[:2], sha1[2:4])

    def new_temp_path(self) -> str:
        """A fresh, unique temp file path in `<root>/tmp`."""
        return os.path.join(self.tmp_dir, TEMP_PREFIX + uuid.uuid4().hex)

    # -- lookups -----------------------------------------------------------
    def stat_file(self, sha1: str, ext: str) -> StoredFile | None:
        """The file `sha1`.`ext`, None when absent."""
        path = self.path_for(sha1, ext)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        return StoredFile(sha1, ext, path, info.st_size, info.st_mtime)

    def find(self, sha1: str) -> StoredFile | None:
        """The file of `sha1` whatever its extension, None when absent."""
        folder = self.folder_for(sha1)
        prefix = sha1 + "."
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix) and NAME_RE.match(entry.name):
                        info = entry.stat(follow_symlinks=False)
                        ext = entry.name[len(prefix):]
                        return StoredFile(sha1, ext, entry.path, info.st_size, info.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None

    def disk_usage(self) -> DiskUsage:
        """Total and free (for unprivileged users) bytes of the store's filesystem."""
        stats = os.statvfs(self.root)
        return DiskUsage(total=stats.f_blocks * stats.f_frsize,
                         free=stats.f_bavail * stats.f_frsize)

    # -- changes -----------------------------------------------------------
    def commit(self, temp_path: str, sha1: str, ext: str) -> tuple[StoredFile, bool]:
        """fsync and move a verified temp file into place; (file, created).

        When the content is already there (any extension) the temp file is
        dropped and `created` is False: concurrent PUTs of one hash are safe
        (`link` refuses an existing target; filesystems without hard links
        fall back to an atomic rename of identical bytes).
        """
        try:
            fd = os.open(temp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            existing = self.find(sha1)
            if existing is not None:
                return existing, False
            folder = self.folder_for(sha1)
            self._make_durable_folder(folder)
            final = self.path_for(sha1, ext)
            try:
                os.link(temp_path, final)
            except FileExistsError:
                return self.stat_file(sha1, ext) or self._must_find(sha1), False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                os.rename(temp_path, final)
            fsync_dir(folder)
            stored = self.stat_file(sha1, ext)
            assert stored is not None
            return stored, True
        finally:
            _unlink_quietly(temp_path)

    def _make_durable_folder(self, folder: str) -> None:
        """Create `folder` (content/ab/cd) if needed, fsyncing each parent whose
        entry changed, so a power loss cannot drop a new folder and its file."""
        if os.path.isdir(folder):
            return
        middle = os.path.dirname(folder)
        created_middle = not os.path.isdir(middle)
        os.makedirs(folder, exist_ok=True)
        if created_middle:
            fsync_dir(self.content_dir)
        fsync_dir(middle)

    def _must_find(self, sha1: str) -> StoredFile:
        found = self.find(sha1)
        if found is None:
            raise FileNotFoundError(sha1)
        return found

    def set_aside(self, sha1: str) -> list[StoredFile]:
        """Move every file of `sha1` from content/ to the same place under leaving/:
        no longer held, found, scanned or copied, still delivered until `purge`.
        The files moved (empty when none)."""
        removed = []
        while True:
            found = self.find(sha1)
            if found is None:
                break
            target = self.leaving_path(found)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.replace(found.path, target)
            except FileNotFoundError:
                continue
            removed.append(found)
        if removed:
            fsync_dir(self.folder_for(sha1))
        return removed

    def leaving_path(self, stored: StoredFile) -> str:
        """Where `set_aside` puts `stored`: its content path under leaving/."""
        return self.leaving_dir + stored.path[len(self.content_dir):]

    def purge(self, files: list[StoredFile]) -> None:
        """Delete the copies of `files` that `set_aside` moved (gone already: fine)."""
        for stored in files:
            _unlink_quietly(self.leaving_path(stored))

    # -- scanning ----------------------------------------------------------
    def scan(self) -> Iterator[tuple[str, str, int] | None]:
        """Every content file as (sha1, ext, size), in constant memory.

        Yields None for each entry that is not a well-formed content file
        (it is skipped; the caller counts it).
        """
        for first in _sorted_subdirs(self.content_dir):
            for second in _sorted_subdirs(first.path):
                prefix = first.name + second.name
                with os.scandir(second.path) as entries:
                    for entry in entries:
                        match = NAME_RE.match(entry.name)
                        if (match is None or not match.group(1).startswith(prefix)
                                or not entry.is_file(follow_symlinks=False)):
                            yield None
                            continue
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:
                            continue
                        yield match.group(1), match.group(2), size


def _sorted_subdirs(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            found = [e for e in entries
                     if HEX2_RE.match(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda e: e.name)


def fsync_dir(folder: str) -> None:
    """fsync a folder, so the entries made or removed in it survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
