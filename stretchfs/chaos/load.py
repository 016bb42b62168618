"""A bounded client load: uploads, purchases and downloads from a few threads.

Every result is recorded with its time, so a scenario can count failures
before, during and after a fault.  The load stops on its own after
`max_requests` calls or `max_seconds`, whichever comes first.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from stretchfs.chaos.client import CallFailed, PrismUser

# The design note's bound on feed propagation (the prisms aim for well under 1 s;
# right after a master restart a prism may be reloading its snapshot).
PROPAGATION_SECONDS = 5.0


@dataclass(frozen=True)
class Item:
    """An uploaded, purchased content the load can download."""

    sha1: str
    ext: str
    token: str
    size: int
    made_at: float = 0.0
    copies: int = 0


@dataclass(frozen=True)
class Result:
    """One call's outcome: `kind` is "ok" or a failure kind; `at` is when the call
    started, so a call made before a fault was detected counts before it."""

    at: float
    operation: str
    kind: str
    detail: str = ""


@dataclass
class LoadMix:
    """Relative weights of the operations."""

    download: int = 8
    upload: int = 1
    purchase: int = 1


class Workers:
    """Daemon threads, one per argument, that stop together."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, target: Callable[[Any], None], args: Iterable[Any]) -> None:
        """Run `target(arg)` in a thread of its own for each of `args`."""
        for arg in args:
            thread = threading.Thread(target=target, args=(arg,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Set `stopping` and wait up to `timeout` for each thread."""
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout)


@dataclass
class Load:
    """Runs client calls against the prisms until told to stop or a bound is hit."""

    prism_urls: list[str]
    username: str
    password: str
    items: list[Item] = field(default_factory=list)
    mix: LoadMix = field(default_factory=LoadMix)
    threads: int = 4
    max_requests: int = 500_000
    max_seconds: float = 300.0
    upload_bytes: tuple[int, int] = (1024, 64 * 1024)
    results: list[Result] = field(default_factory=list)
    uploaded: list[Item] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._workers = Workers()
        self._budget = itertools.count()

    def seed(self, count: int) -> None:
        """Upload and purchase `count` files before the fault, for downloads."""
        user = self._user(0)
        try:
            for _ in range(count):
                self.items.append(self._upload_and_purchase(user))
        finally:
            user.close()

    def start(self) -> None:
        """Log every worker in, then start the worker threads."""
        self._workers.start(self._run, [self._user(index) for index in range(self.threads)])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers and wait for them."""
        self._workers.stop(timeout)

    def _user(self, index: int) -> PrismUser:
        user = PrismUser(self.prism_urls[index % len(self.prism_urls)], self.username,
                         self.password)
        user.login()
        return user

    def _upload_and_purchase(self, user: PrismUser) -> Item:
        data = os.urandom(random.randint(*self.upload_bytes))
        content = user.upload(data, "chaos.bin")
        with self._lock:
            self.uploaded.append(Item(content.hash, content.ext, "", len(data),
                                      time.monotonic(), content.copies))
        token = user.purchase(content.hash, content.ext)
        return Item(content.hash, content.ext, token, len(data), time.monotonic(),
                    content.copies)

    def _record(self, started: float, operation: str, kind: str, detail: str = "") -> None:
        with self._lock:
            self.results.append(Result(started, operation, kind, detail))

    def _run(self, user: PrismUser) -> None:
        try:
            deadline = time.monotonic() + self.max_seconds
            weights = [("download", self.mix.download), ("upload", self.mix.upload),
                       ("purchase", self.mix.purchase)]
            operations = [name for name, weight in weights for _ in range(weight)]
            while not self._workers.stopping.is_set() and time.monotonic() < deadline:
                if next(self._budget) >= self.max_requests:
                    return
                operation = random.choice(operations)
                started = time.monotonic()
                try:
                    self._operate(user, operation)
                    self._record(started, operation, "ok")
                except CallFailed as exc:
                    self._record(started, operation, exc.kind, str(exc))
                    time.sleep(0.05)
        finally:
            user.close()

    def _operate(self, user: PrismUser, operation: str) -> None:
        # Download only what every prism can know: a purchase reaches the other
        # prisms through the master's feed, not at the instant it is made.
        settled = time.monotonic() - PROPAGATION_SECONDS
        with self._lock:
            pool = [item for item in self.items if item.made_at <= settled]
        if operation == "upload" or not pool:
            item = self._upload_and_purchase(user)
            with self._lock:
                self.items.append(item)
            return
        item = random.choice(pool)
        if operation == "purchase":
            user.purchase(item.sha1, item.ext)
        else:
            try:
                user.download(item.token, "file." + item.ext, item.sha1)
            except CallFailed as exc:
                raise CallFailed(exc.kind, "{} (upload made {} copies)".format(
                    exc, item.copies)) from None

    def failures(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        """Failure kinds recorded in [since, until)."""
        with self._lock:
            return Counter(r.kind for r in self.results
                           if r.kind != "ok" and since <= r.at < until)

    def examples(self, since: float = 0.0) -> dict[str, str]:
        """One recorded detail per failure kind (of the calls started from `since` on),
        for reports."""
        with self._lock:
            found: dict[str, str] = {}
            for result in self.results:
                if result.kind != "ok" and result.at >= since:
                    found.setdefault(result.kind, result.detail[:200])
            return found

    def count(self) -> int:
        """Calls recorded so far."""
        with self._lock:
            return len(self.results)
