"""Running blocking work off the reactor thread."""

from __future__ import annotations

from typing import Any, Callable, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

P = ParamSpec("P")
T = TypeVar("T")


class RunBlocking(Protocol):
    """Runs `function(*args, **kwargs)` off the reactor thread; fires with its result."""

    def __call__(self, function: Callable[P, T], /, *args: P.args,
                 **kwargs: P.kwargs) -> Deferred[T]: ...


def thread_runner(reactor: Any) -> RunBlocking | None:
    """`run(function, *args)` in the reactor's thread pool; None for a reactor
    without one (a test clock), where callers work inline."""
    if not hasattr(reactor, "getThreadPool"):
        return None
    from twisted.internet.threads import deferToThreadPool

    def run(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args, **kwargs)

    return run
