"""ContentStore: validated paths, atomic commit, removal, scanning."""

from __future__ import annotations

import errno
import os

import pytest

from stretchfs.errors import InvalidInput
from stretchfs.store.layout import ContentStore, parse_name
from tests.store.harness import sha1_of


def _temp(store: ContentStore, data: bytes) -> str:
    path = store.new_temp_path()
    with open(path, "wb") as handle:
        handle.write(data)
    return path


@pytest.fixture
def store(tmp_path) -> ContentStore:
    content = ContentStore(str(tmp_path))
    content.prepare()
    return content


def test_commit_links_into_place_and_second_commit_is_a_no_op(store) -> None:
    """A commit puts the file at content/ab/cd/<sha1>.<ext>; a second one keeps the first."""
    data = b"abc"
    sha1 = sha1_of(data)
    stored, created = store.commit(_temp(store, data), sha1, "txt")
    assert created and stored.path == os.path.join(store.content_dir, sha1[:2], sha1[2:4],
                                                   sha1 + ".txt")
    again, created = store.commit(_temp(store, data), sha1, "bin")
    assert not created and again.ext == "txt"
    assert os.listdir(store.tmp_dir) == []


def test_commit_falls_back_to_rename_without_hard_links(store, monkeypatch) -> None:
    """On a filesystem refusing hard links, the commit renames the temp file instead."""
    def no_links(source: str, target: str) -> None:
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    data = b"no links"
    stored, created = store.commit(_temp(store, data), sha1_of(data), "bin")
    assert created and os.path.exists(stored.path)
    assert os.listdir(store.tmp_dir) == []


def test_prepare_removes_leftover_temp_files(store) -> None:
    """Temp files a crash left behind are deleted at start-up."""
    _temp(store, b"half an upload")
    store.prepare()
    assert os.listdir(store.tmp_dir) == []


def test_set_aside_purge_and_find(store) -> None:
    """find() locates a hash whatever its extension; set_aside() takes it out of content/
    (into leaving/) and purge() deletes it."""
    data = b"findme"
    sha1 = sha1_of(data)
    store.commit(_temp(store, data), sha1, "jpg")
    assert store.find(sha1).ext == "jpg"
    removed = store.set_aside(sha1)
    assert [f.ext for f in removed] == ["jpg"]
    assert store.find(sha1) is None and store.set_aside(sha1) == []
    with open(store.leaving_path(removed[0]), "rb") as handle:
        assert handle.read() == data
    store.purge(removed)
    assert not os.path.exists(store.leaving_path(removed[0]))


@pytest.mark.parametrize("name", ["../x.txt", "a" * 40, "A" * 40 + ".txt", "a" * 40 + ".",
                                  "a" * 40 + ".t/t", "/" + "a" * 40 + ".txt"])
def test_parse_name_refuses_anything_but_sha1_dot_ext(name: str) -> None:
    """parse_name() accepts only <40 lowercase hex>.<[a-z0-9]{1,10}>."""
    with pytest.raises(InvalidInput):
        parse_name(name)


def test_path_for_validates(store) -> None:
    """path_for() refuses bad hashes and extensions before building a path."""
    with pytest.raises(InvalidInput):
        store.path_for("../../etc/passwd", "txt")
    with pytest.raises(InvalidInput):
        store.path_for("a" * 40, "../x")
