"""HTTP self-check: the ping net answers only while the node's own HTTP service answers."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.logger import capturedLogs

from stretchfs.errors import PeerUnavailable
from stretchfs.pingnet.selfcheck import (
    SELF_CHECK_FAILURES,
    SELF_CHECK_INTERVAL_SECONDS,
    SELF_CHECK_TIMEOUT_SECONDS,
    HttpSelfCheck,
    http_ping,
)


class FakeProbe:
    """A probe whose answers the test decides: "ok", "error" or "silent" (never answers)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.cancelled = 0

    def __call__(self) -> Deferred[Any]:
        self.calls += 1
        if self.mode == "ok":
            return succeed(None)
        if self.mode == "error":
            return fail(ConnectionRefusedError())
        return Deferred(lambda d: self._cancel())

    def _cancel(self) -> None:
        self.cancelled += 1


def _run(clock, seconds: float) -> None:
    """Advance `clock` by `seconds` in exact steps of 1/4 s."""
    for _ in range(int(round(seconds * 4))):
        clock.advance(0.25)


def _started(clock, probe: FakeProbe) -> tuple[HttpSelfCheck, list[bool]]:
    changes: list[bool] = []
    check = HttpSelfCheck(clock, probe, changes.append)
    check.startService()
    return check, changes


def test_failing_checks_turn_the_node_silent_after_the_threshold(clock) -> None:
    """Only SELF_CHECK_FAILURES failed checks in a row report the HTTP side down, once."""
    probe = FakeProbe()
    check, changes = _started(clock, probe)
    probe.mode = "error"
    _run(clock, SELF_CHECK_INTERVAL_SECONDS * (SELF_CHECK_FAILURES - 1))
    assert changes == [] and check.ok
    with capturedLogs() as events:
        _run(clock, SELF_CHECK_INTERVAL_SECONDS * 3)
    assert changes == [False] and not check.ok
    assert [e["ok"] for e in events if e.get("event") == "http_self_check"] == [False]
    check.stopService()


def test_one_success_brings_the_node_back(clock) -> None:
    """The first answered check after a failure reports the HTTP side up again."""
    probe = FakeProbe()
    probe.mode = "error"
    check, changes = _started(clock, probe)
    _run(clock, SELF_CHECK_INTERVAL_SECONDS * SELF_CHECK_FAILURES)
    assert changes == [False]
    probe.mode = "ok"
    _run(clock, SELF_CHECK_INTERVAL_SECONDS)
    assert changes == [False, True] and check.ok
    check.stopService()


def test_one_slow_answer_under_load_does_not_flap(clock) -> None:
    """Isolated failures between answered checks never report the HTTP side down."""
    probe = FakeProbe()
    check, changes = _started(clock, probe)
    for _ in range(20):
        probe.mode = "silent"
        _run(clock, SELF_CHECK_INTERVAL_SECONDS)  # this check times out ...
        probe.mode = "ok"
        _run(clock, SELF_CHECK_TIMEOUT_SECONDS + SELF_CHECK_INTERVAL_SECONDS)  # ... this one not
    assert changes == [] and probe.cancelled == 20 and probe.calls == 40
    check.stopService()


def test_a_listener_that_never_answers_fails_at_the_deadline(clock) -> None:
    """A check that gets no answer is cancelled at SELF_CHECK_TIMEOUT_SECONDS and
    counts as failed, so a wedged listener turns the node silent."""
    probe = FakeProbe()
    probe.mode = "silent"
    check, changes = _started(clock, probe)
    _run(clock, SELF_CHECK_INTERVAL_SECONDS + SELF_CHECK_TIMEOUT_SECONDS)
    assert probe.calls == 1 and probe.cancelled == 1
    _run(clock, (SELF_CHECK_INTERVAL_SECONDS + SELF_CHECK_TIMEOUT_SECONDS)
         * (SELF_CHECK_FAILURES - 1))
    assert changes == [False] and probe.calls == SELF_CHECK_FAILURES
    check.stopService()


def test_stop_leaves_no_timers(clock) -> None:
    """After stopService no delayed call remains, even with a check in flight."""
    probe = FakeProbe()
    probe.mode = "silent"
    check, _changes = _started(clock, probe)
    _run(clock, SELF_CHECK_INTERVAL_SECONDS + 0.1)
    assert probe.calls == 1
    check.stopService()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_http_ping_fails_against_a_listener_that_says_nothing() -> None:
    """A real GET /ping to a port that accepts and never answers fails at its deadline."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    from stretchfs.wire.http import make_http_client

    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    http = make_http_client(reactor, persistent=False)
    try:
        url = "http://127.0.0.1:{}/ping".format(port.getHost().port)
        started = reactor.seconds()
        # The deadline cancels the request: reported as the peer being unreachable.
        with pytest.raises((TimeoutError, PeerUnavailable)):
            await http_ping(http, url, reactor).addTimeout(0.3, reactor)
        assert 0.3 <= reactor.seconds() - started < 2.0
    finally:
        await port.stopListening()
