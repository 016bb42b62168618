"""NDJSON streaming: flow control keeps at most one chunk in flight ahead."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from stretchfs.master.streaming import stream_ndjson
from stretchfs.wire.master import NdjsonSplitter
from tests.helpers import result_of


class FakeRequest:
    """Just enough of an IRequest for `stream_ndjson`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.code = None
        self.headers: dict[bytes, bytes] = {}
        self.path = b"/inventory/snapshot"

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Chunks:
    """A chunk source whose answers the test releases one by one."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.asked = 0
        self.pending: list[Deferred] = []

    def next(self) -> Deferred:
        self.asked += 1
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        index = len([d for d in self.pending if d.called])
        d = self.pending[index]
        d.callback((b"row%d\n" % index, index + 1 == self.total))


def test_paused_stream_asks_for_nothing_more() -> None:
    """While the consumer is paused no chunk beyond the one prefetched is requested."""
    request = FakeRequest()
    chunks = Chunks(total=4)
    done = ensureDeferred(stream_ndjson(request, b'{"cursor":"0-0"}\n', chunks.next))
    chunks.answer()
    assert request.written == [b'{"cursor":"0-0"}\nrow0\n']
    assert chunks.asked == 2  # one fetched ahead
    request.producer.pauseProducing()
    chunks.answer()
    assert request.written[-1] == b"row1\n"
    assert chunks.asked == 2  # paused: nothing more is asked of Redis
    request.producer.resumeProducing()
    assert chunks.asked == 3
    chunks.answer()
    chunks.answer()
    assert result_of(done) == b""
    assert b"".join(request.written).count(b"\n") == 5
    assert request.producer is None
    assert request.headers[b"Content-Type"] == b"application/x-ndjson"


def test_stopped_stream_ends_without_more_reads() -> None:
    """When the client goes away (stopProducing) the stream stops reading chunks."""
    request = FakeRequest()
    chunks = Chunks(total=10)
    done = ensureDeferred(stream_ndjson(request, b"", chunks.next))
    chunks.answer()
    request.producer.stopProducing()
    chunks.answer()
    assert result_of(done) == b""
    assert chunks.asked == 2 and request.written == [b"row0\n"]


def test_failure_before_the_first_byte_is_a_clean_error() -> None:
    """A failing first chunk raises before anything is written (the route answers 503)."""
    from stretchfs.redisstore import RedisUnavailable

    request = FakeRequest()
    chunks = Chunks(total=1)
    done = ensureDeferred(stream_ndjson(request, b"", chunks.next))
    chunks.pending[0].errback(RedisUnavailable("cluster Redis unavailable"))
    failures: list = []
    done.addErrback(failures.append)
    assert failures and failures[0].check(RedisUnavailable)
    assert request.written == [] and request.code is None


def test_a_streamed_row_holding_nan_is_refused() -> None:
    """A feed or snapshot line holding NaN raises instead of reaching the caller."""
    rows: list = []
    splitter = NdjsonSplitter(rows.append)
    splitter.feed(b'{"hash":"a"}\n')
    with pytest.raises(ValueError):
        splitter.feed(b'{"size":NaN}\n')
    splitter.feed(b'{"size":Infinity}')
    with pytest.raises(ValueError):
        splitter.close()
    assert rows == [{"hash": "a"}]
