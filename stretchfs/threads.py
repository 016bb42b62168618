"""Running blocking work off the reactor thread."""

from __future__ import annotations

from typing import Callable, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class RunBlocking(Protocol):
    """Runs `function(*args, **kwargs)` off the reactor thread; fires with its result."""

    def __call__(self, function: Callable[P, T], /, *args: P.args,
                 **kwargs: P.kwargs) -> Deferred[T]: ...


def thread_runner(reactor: IReactorThreads) -> RunBlocking:
    """`run(function, *args)` in the reactor's thread pool."""

    def run(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args, **kwargs)

    return run
