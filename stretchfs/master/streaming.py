"""Streaming NDJSON answers with flow control, in constant memory.

A snapshot can be millions of rows: it is produced chunk by chunk (one
server-side Lua call per chunk of about a thousand rows, already encoded as
NDJSON) and written to the request as an `IPushProducer`.  When the client
reads slowly, twisted.web pauses the producer and no further chunk is asked
of Redis until it resumes, so the master holds at most one chunk per stream.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

NDJSON_CONTENT_TYPE = b"application/x-ndjson"

log = Logger()

NextChunk = Callable[[], Coroutine[Any, Any, tuple[bytes, bool]]]


@implementer(IPushProducer)
class _Flow:
    """Pause/resume/stop state of one streaming answer."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._resumed: Deferred[None] | None = None

    def pauseProducing(self) -> None:
        """The consumer's buffer is full: stop asking Redis for chunks."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The consumer drained its buffer: continue."""
        self.paused = False
        d, self._resumed = self._resumed, None
        if d is not None:
            d.callback(None)

    def stopProducing(self) -> None:
        """The client went away: stop for good."""
        self.stopped = True
        self.resumeProducing()

    def wait_resumed(self) -> Deferred[None] | None:
        """A Deferred that fires on resume, or None when not paused."""
        if not self.paused or self.stopped:
            return None
        if self._resumed is None:
            self._resumed = Deferred()
        return self._resumed


async def stream_ndjson(request: IRequest, first: bytes, next_chunk: NextChunk,
                        on_rows: Callable[[bytes], None] | None = None) -> bytes:
    """Write `first` and then every chunk of `next_chunk()` until it says done.

    `next_chunk` returns `(ndjson_bytes, done)`.  The first chunk is fetched
    before anything is written, so an early failure (Redis down) is still a
    clean JSON error; a failure after the first bytes aborts the connection,
    so the reader sees a truncated stream instead of a silently short one.
    """
    chunk, done = await next_chunk()
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", NDJSON_CONTENT_TYPE)
    request.setHeader(b"Cache-Control", b"no-store")
    flow = _Flow()
    consumer = cast(IConsumer, request)  # twisted.web's Request is one
    consumer.registerProducer(flow, True)
    pending: Deferred[tuple[bytes, bool]] | None = None
    try:
        # the next chunk is asked of Redis as soon as the previous one is written
        # (unless the consumer paused us), so Redis works while this process and
        # the socket do; at most one chunk is held besides the transport buffer
        if not done:
            pending = ensureDeferred(next_chunk())
        request.write(first + chunk)
        if on_rows:
            on_rows(chunk)
        while pending is not None:
            chunk, done = await pending
            pending = None
            if flow.stopped:
                break
            if chunk:
                request.write(chunk)
                if on_rows:
                    on_rows(chunk)
            if done:
                break
            waiting = flow.wait_resumed()
            while waiting is not None:
                await waiting
                waiting = flow.wait_resumed()
            if flow.stopped:
                break
            pending = ensureDeferred(next_chunk())
    except CancelledError:
        consumer.unregisterProducer()
        raise
    except Exception:
        log.failure("while streaming {path}", path=request.path)
        consumer.unregisterProducer()
        transport = getattr(getattr(request, "channel", None), "transport", None)
        if transport is not None:
            transport.abortConnection()
        never: Deferred[bytes] = Deferred()
        return await never  # klein cancels it when the connection is gone
    finally:
        if pending is not None and not pending.called:
            pending.addErrback(lambda _: None)
    consumer.unregisterProducer()
    return b""
