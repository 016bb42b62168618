"""A prism of two workers (`[http] workers = 2`) whose second worker hangs stops whole."""

from __future__ import annotations

import os
import signal
import time

from stretchfs.devcluster.process import read_events
from stretchfs.prism.workers import WORKER_SILENT_SECONDS, WORKER_STOP_SECONDS
from tests.e2e.conftest import alive, child_pids, running_cluster


def test_a_hung_worker_stops_its_prism(tmp_path, repo_root: str) -> None:
    """SIGSTOP on worker 2 (it still holds its share of the port, so the kernel keeps
    handing it connections nobody answers): the first process notices the silence, logs
    it, kills the worker and exits, instead of serving half its clients."""
    with running_cluster(str(tmp_path / "cluster"), repo_root, prisms=1, stores=1,
                         prism_workers=2) as handle:
        prism = handle.nodes("prism")[0]
        workers = child_pids(int(prism["pid"]))
        assert len(workers) == 1
        try:
            os.kill(workers[0], signal.SIGSTOP)
            stopped_at = time.monotonic()
            deadline = stopped_at + WORKER_SILENT_SECONDS + WORKER_STOP_SECONDS + 20
            while alive(int(prism["pid"])) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not alive(int(prism["pid"])), "the prism kept running with a hung worker"
            assert time.monotonic() - stopped_at >= WORKER_SILENT_SECONDS - 1
            assert not alive(workers[0]), "the hung worker was left running"
            silent = [e for e in read_events(prism["log"]) if e.get("event") == "worker_silent"]
            assert [e["worker"] for e in silent] == [2]
        finally:
            if alive(workers[0]):
                os.kill(workers[0], signal.SIGKILL)
