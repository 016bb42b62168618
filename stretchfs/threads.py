"""Running blocking work off the reactor thread."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

RunBlocking = Callable[..., Deferred]


def thread_runner(reactor: Any) -> RunBlocking | None:
    """`run(function, *args)` in the reactor's thread pool; None for a reactor
    without one (a test clock), where callers work inline."""
    if not hasattr(reactor, "getThreadPool"):
        return None
    from twisted.internet.threads import deferToThreadPool

    def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args, **kwargs)

    return run
