"""A store upload's hashing and writing on its executor: back-pressure, digest, abort,
failures (jobs held and run by the test, no threads, no sleeps)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred

from stretchfs.errors import InsufficientStorage, PayloadTooLarge
from stretchfs.store.layout import ContentStore
from stretchfs.store.upload import PutReceiver
from stretchfs.web.intake import BLOCK_BYTES, Watermarks
from tests.helpers import CLUSTER_KEY
from tests.test_intake import HeldExecutor, Producer


@pytest.fixture
def store(tmp_path) -> ContentStore:
    content = ContentStore(str(tmp_path))
    content.prepare()
    return content


def _receiver(store: ContentStore, run: Any, max_put: int = 10**9,
              marks: Watermarks = Watermarks()) -> PutReceiver:
    return PutReceiver(store, cluster_key=CLUSTER_KEY, max_put=max_put, min_free=0, run=run,
                       marks=marks)


def test_upload_pauses_the_connection_and_resumes_it(store) -> None:
    """Past the high-water mark the connection is paused; once drained it is resumed,
    and the file holds every byte with the right digest."""
    run = HeldExecutor()
    producer = Producer()
    receiver = _receiver(store, run, marks=Watermarks(2 * BLOCK_BYTES, BLOCK_BYTES))
    data = os.urandom(5 * BLOCK_BYTES)
    upload = receiver.open(hashlib.sha1(data).hexdigest(), "bin", len(data), producer)
    for start in range(0, len(data), 65536):
        upload.write(data[start:start + 65536])
    assert set(producer.events) == {"pause"}
    digest: list[Any] = []
    upload.finish().addBoth(digest.append)
    run.drain()
    assert producer.events[-1] == "resume"
    assert digest == [hashlib.sha1(data).hexdigest()]
    with open(upload.path, "rb") as handle:
        assert handle.read() == data


def test_abandon_deletes_the_temp_file_once_queued_blocks_finish(store) -> None:
    """Abandoning an upload with blocks in flight removes its temp file."""
    run = HeldExecutor()
    upload = _receiver(store, run).open("0" * 40, "bin", None, Producer())
    upload.write(b"x" * (2 * BLOCK_BYTES))
    upload.abandon()
    run.drain()
    assert not os.path.exists(upload.path)
    assert os.listdir(store.tmp_dir) == []


def test_upload_refuses_bytes_past_the_limit(store) -> None:
    """An upload stops at max_put with PayloadTooLarge."""
    upload = _receiver(store, maybeDeferred, max_put=10).open("0" * 40, "bin", None, Producer())
    with pytest.raises(PayloadTooLarge):
        upload.write(b"x" * 11)
    upload.abandon()
    assert os.listdir(store.tmp_dir) == []


def test_a_failing_executor_is_reported_instead_of_hanging(store) -> None:
    """Work that fails in the executor (not a disk error) fails the upload: later chunks
    are refused as a storage error and finish() reports it."""
    def broken(work: Any, *args: Any) -> Deferred:
        return maybeDeferred(_raise)

    def _raise() -> None:
        raise ValueError("pool broke")

    upload = _receiver(store, broken).open("0" * 40, "bin", None, Producer())
    upload.write(b"x" * BLOCK_BYTES)
    with pytest.raises(InsufficientStorage):
        upload.write(b"x")
    failures: list[Any] = []
    upload.finish().addErrback(failures.append)
    assert failures and failures[0].check(OSError)
    upload.abandon()
    assert os.listdir(store.tmp_dir) == []
