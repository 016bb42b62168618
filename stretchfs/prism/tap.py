"""twistd entry point of the prism: options and makeService."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.python import usage

from stretchfs.config import PrismConfig
from stretchfs.prism.service import build_prism_service
from stretchfs.prism.workers import CONTROL_FD, REQUEST_FD, WorkerWiring
from stretchfs.tapbase import CONFIG_ENV, RoleOptions, real_service

EX_WORKER_DIED = 70
"""Exit code (EX_SOFTWARE) of a prism stopped because one of its workers exited, so
that systemd's `Restart=on-failure` starts it again."""


class Options(RoleOptions):
    """Options of `twistd stretchfs-prism`."""

    role = "prism"
    optParameters = RoleOptions.optParameters + [
        ["worker", None, "1", "(internal) worker number, set by the first prism process"],
        ["worker-ports", None, "", "(internal) ports a worker joins, comma-separated"],
    ]

    def postOptions(self) -> None:
        """Load the config; check the internal worker options."""
        super().postOptions()
        try:
            self.worker = int(self["worker"])
            self.worker_ports = tuple(int(p) for p in self["worker-ports"].split(",") if p)
        except ValueError:
            raise usage.UsageError("--worker and --worker-ports expect numbers") from None
        if self.worker > 1 and len(self.worker_ports) != len(self.settings.http.listen):
            raise usage.UsageError("--worker-ports needs one port per [http] listen endpoint")


def makeService(options: Options) -> IService:
    """Build the prism with the real reactor, Redis pool, HTTP client and thread pool;
    with `[http] workers` > 1, as worker 1 (spawning the others) or as worker N."""
    from twisted.internet import reactor

    workers = None
    assert isinstance(options.settings, PrismConfig)
    if options.settings.http.workers > 1:
        workers = _wiring(options, reactor)
    return real_service(options, build_prism_service, max_per_host=64, udp=True,
                        workers=workers)


def _wiring(options: Options, reactor: Any) -> WorkerWiring:
    """Worker 1 spawns `twistd stretchfs-prism --worker N` with this config and logger
    (stdin: peer state; fd 3: its requests; stdout and stderr: ours); workers 2..N
    read stdin and write fd 3."""
    if options.worker > 1:
        from twisted.internet.stdio import StandardIO

        def connect(protocol: Protocol) -> Any:
            # (typeshed knows only the Windows signature)
            return StandardIO(protocol, stdin=CONTROL_FD, stdout=REQUEST_FD,  # type: ignore[call-arg]
                              reactor=reactor)

        return WorkerWiring(worker=options.worker, stop=reactor.stop, connect=connect,
                            ports=options.worker_ports)

    def stop_failed() -> None:
        """Stop every service, then exit EX_WORKER_DIED (twistd itself would exit 0)."""
        reactor.addSystemEventTrigger("after", "shutdown", _exit_now, EX_WORKER_DIED)
        reactor.stop()

    config = os.path.abspath(options["config"] or os.environ[CONFIG_ENV])
    parent: Any = getattr(options, "parent", None)
    logger = parent.get("logger") if parent is not None else None
    if not isinstance(logger, str):  # twistd has imported it: the worker's config says it
        logger = None

    def spawn(worker: int, protocol: ProcessProtocol, ports: list[int]) -> IProcessTransport:
        args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "--nodaemon", "--pidfile="]
        args += ["--logger={}".format(logger)] if logger else []
        args += ["stretchfs-prism", "--config", config, "--worker", str(worker),
                 "--worker-ports", ",".join(str(port) for port in ports)]
        return reactor.spawnProcess(protocol, sys.executable, args, env=dict(os.environ),
                                    childFDs={CONTROL_FD: "w", 1: 1, 2: 2, REQUEST_FD: "r"})

    return WorkerWiring(worker=1, stop=stop_failed, spawn=spawn)


def _exit_now(code: int) -> None:
    """Flush the logs and end the process with `code` (after the services stopped)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
