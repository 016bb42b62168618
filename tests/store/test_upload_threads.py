"""The threaded upload pipeline: back-pressure, digest, abort (threads joined, no sleeps)."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest

from stretchfs.store import upload as upload_module
from stretchfs.store.layout import ContentStore
from stretchfs.store.upload import PutUpload


class CollectingReactor:
    """Collects callFromThread calls; the test runs them on its own thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def callFromThread(self, function: Any, *args: Any) -> None:  # noqa: N802
        with self._lock:
            self.calls.append((function, args))

    def run_calls(self) -> None:
        with self._lock:
            calls, self.calls = self.calls, []
        for function, args in calls:
            function(*args)


class GatedDigest:
    """A SHA1 whose updates wait for `gate` (so chunks pile up deterministically)."""

    def __init__(self, gate: threading.Event) -> None:
        self._gate = gate
        self._digest = hashlib.sha1()

    def update(self, data: bytes) -> None:
        assert self._gate.wait(10)
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _join_stages(upload: PutUpload) -> None:
    for stage in upload._writer._stages:  # type: ignore[union-attr]
        stage.thread.join(10)
        assert not stage.thread.is_alive()


@pytest.fixture
def store(tmp_path) -> ContentStore:
    content = ContentStore(str(tmp_path))
    content.prepare()
    return content


def test_pipeline_pauses_the_socket_and_resumes_it(store, monkeypatch) -> None:
    """Past the high-water mark the transport is paused; once drained it is resumed."""
    monkeypatch.setattr(upload_module, "HIGH_WATER_BYTES", 1000)
    monkeypatch.setattr(upload_module, "LOW_WATER_BYTES", 500)
    gate = threading.Event()
    reactor = CollectingReactor()
    events: list[str] = []
    data = os.urandom(3000)
    upload = PutUpload(store, hashlib.sha1(data).hexdigest(), "bin", 10**9, lambda n: None,
                       reactor=reactor, pause=lambda: events.append("pause"),
                       resume=lambda: events.append("resume"), digest=GatedDigest(gate))
    for start in range(0, 3000, 600):
        upload.write(data[start:start + 600])
    assert events == ["pause"]
    gate.set()
    done = upload._writer.finish()  # type: ignore[union-attr]
    _join_stages(upload)
    reactor.run_calls()
    assert events == ["pause", "resume"]
    assert done.called
    assert upload.hexdigest() == hashlib.sha1(data).hexdigest()
    with open(upload.temp_path, "rb") as handle:
        assert handle.read() == data


def test_pipeline_abort_deletes_the_temp_file(store) -> None:
    """Aborting a threaded upload removes its temp file and ends its threads."""
    reactor = CollectingReactor()
    upload = PutUpload(store, "0" * 40, "bin", 10**9, lambda n: None, reactor=reactor)
    upload.write(b"x" * 100_000)
    upload.abort()
    _join_stages(upload)
    reactor.run_calls()
    assert not os.path.exists(upload.temp_path)
    assert os.listdir(store.tmp_dir) == []


def test_pipeline_refuses_bytes_past_the_limit(store) -> None:
    """A threaded upload still stops at max bytes with PayloadTooLarge."""
    from stretchfs.errors import PayloadTooLarge

    reactor = CollectingReactor()
    upload = PutUpload(store, "0" * 40, "bin", 10, lambda n: None, reactor=reactor)
    with pytest.raises(PayloadTooLarge):
        upload.write(b"x" * 11)
    upload.abort()
    _join_stages(upload)


class BrokenDigest:
    """A digest whose update fails with something other than a disk error."""

    def update(self, data: bytes) -> None:
        raise ValueError("hash engine broke")

    def hexdigest(self) -> str:
        return "0" * 40


def test_pipeline_reports_any_stage_failure_instead_of_hanging(store) -> None:
    """A stage failing with a non-OSError still ends both threads; finish reports it."""
    reactor = CollectingReactor()
    events: list[str] = []
    upload = PutUpload(store, "0" * 40, "bin", 10**9, lambda n: None, reactor=reactor,
                       pause=lambda: events.append("pause"),
                       resume=lambda: events.append("resume"), digest=BrokenDigest())
    upload.write(b"x" * 1000)
    done = upload._writer.finish()  # type: ignore[union-attr]
    _join_stages(upload)
    reactor.run_calls()
    assert done.called
    assert isinstance(upload._writer.error, OSError)  # type: ignore[union-attr]
    upload.abort()
    assert os.listdir(store.tmp_dir) == []
