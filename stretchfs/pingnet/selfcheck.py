"""`HttpSelfCheck`: is this node's own HTTP service answering?

A node whose ping net answers while its HTTP side does not (listener gone,
accept failing for lack of file descriptors, a wedged site) would be voted
available and sent traffic it cannot serve.  Every SELF_CHECK_INTERVAL_SECONDS
this service sends `GET /ping` over real TCP to the node's own bound HTTP
address (a new connection each time, so a failing accept shows) with a
deadline of SELF_CHECK_TIMEOUT_SECONDS that also holds against a listener
that accepts and says nothing.  After SELF_CHECK_FAILURES failed checks in a
row it reports the HTTP side down (the ping net then goes silent, so peers
vote the node down like a dead one); the first answered check reports it up
again.  A single slow answer under CPU load therefore never flaps the node.
"""

from __future__ import annotations

from typing import Any, Callable

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stretchfs.errors import UpstreamError
from stretchfs.periodic import PeriodicService
from stretchfs.wire.http import Deadline

log = Logger()
SELF_CHECK_INTERVAL_SECONDS = 1.0
SELF_CHECK_TIMEOUT_SECONDS = 2.0
SELF_CHECK_FAILURES = 3
_PING_REPLY_MAX_BYTES = 1024


def http_ping(http: HTTPClient, url: str, clock: Any) -> Deferred[None]:
    """GET `url`; fires when it answers 200 with its whole body, fails otherwise.

    It gives up after SELF_CHECK_TIMEOUT_SECONDS without progress; the caller
    may add a whole-exchange deadline (`addTimeout`), which cancels the
    request, connection and body read alike.
    """

    async def ping() -> None:
        with Deadline(clock, SELF_CHECK_TIMEOUT_SECONDS, url) as deadline:
            response = await deadline.response(http.get(url))
            body = await deadline.read(response, _PING_REPLY_MAX_BYTES)
        if response.code != 200:
            raise UpstreamError(response.code, body)

    return Deferred.fromCoroutine(ping())


class HttpSelfCheck(PeriodicService):
    """Runs `probe()` periodically and reports changes of the HTTP side to `on_change`."""

    def __init__(self, clock: Any, probe: Callable[[], Deferred[Any]],
                 on_change: Callable[[bool], None]) -> None:
        super().__init__(clock, SELF_CHECK_INTERVAL_SECONDS, now=False)
        self._probe = probe
        self._on_change = on_change
        self._pending: Deferred[Any] | None = None
        self.failures = 0
        self.ok = True

    def stopService(self) -> None:
        """Stop checking and cancel a check in flight."""
        super().stopService()
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def run_once(self) -> Deferred[None] | None:
        """One check; the loop waits for it, so checks never overlap."""
        try:
            d = self._probe().addTimeout(SELF_CHECK_TIMEOUT_SECONDS, self._clock)
        except Exception:
            log.failure("HTTP self-check could not start")
            self._result(False)
            return None
        self._pending = d
        d.addCallbacks(lambda _: self._result(True), self._failed)
        d.addBoth(self._done)
        return d

    def _failed(self, failure: Any) -> None:
        log.debug("HTTP self-check failed: {error}", error=str(failure.value))
        self._result(False)

    def _done(self, _: Any) -> None:
        self._pending = None

    def _result(self, answered: bool) -> None:
        if not self.running:
            return
        self.failures = 0 if answered else self.failures + 1
        ok = answered or (self.ok and self.failures < SELF_CHECK_FAILURES)
        if ok == self.ok:
            return
        self.ok = ok
        if ok:
            log.info("HTTP self-check answered again; the ping net answers again",
                     event="http_self_check", ok=True)
        else:
            log.warn("HTTP self-check failed {failures} times in a row; the ping net goes "
                     "silent until HTTP answers", failures=self.failures,
                     event="http_self_check", ok=False)
        self._on_change(ok)
