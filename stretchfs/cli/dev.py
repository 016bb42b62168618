"""`stretchfs dev up|down|status`: a local cluster in one command."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

DEFAULT_WORKDIR = "./.stretchfs-dev"
NO_CLUSTER = "no cluster running in {}"


def add_parser(subparsers: Any) -> None:
    """Register `dev` and its subcommands."""
    dev = subparsers.add_parser("dev", help="run a local cluster of real processes")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    up = dev_sub.add_parser("up", help="start Redis, masters, prisms and stores")
    up.add_argument("--workdir", default=DEFAULT_WORKDIR,
                    help="folder for configs, data and logs (default %(default)s)")
    up.add_argument("--masters", type=int, default=1,
                    help="masters to start, each node lists them all (default 1)")
    up.add_argument("--prisms", type=int, default=2, help="prisms to start (default 2)")
    up.add_argument("--stores", type=int, default=3, help="stores to start (default 3)")
    up.add_argument("--detach", action="store_true",
                    help="return once ready; stop later with `stretchfs dev down`")
    up.add_argument("--ha", action="store_true",
                    help="Redis as a primary, two replicas and three Sentinels "
                         "(docs/ha.md); starts Redis empty")
    up.add_argument("--timeout", type=float, default=90.0,
                    help="seconds to wait for every node to be healthy")
    # -- delivery speed (issue 16) --
    up.add_argument("--nginx", action="store_true",
                    help="front each store with nginx checking the delivery signatures "
                         "(needs nginx installed)")
    up.add_argument("--prism-workers", type=int, default=1,
                    help="processes per prism sharing its ports ([http] workers, default 1)")
    up.set_defaults(func=run_up)
    down = dev_sub.add_parser("down", help="stop a cluster started with --detach")
    down.add_argument("--workdir", default=DEFAULT_WORKDIR,
                      help="the workdir given to `dev up` (default %(default)s)")
    down.set_defaults(func=run_down)
    status = dev_sub.add_parser("status", help="health of every node")
    status.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help="the workdir given to `dev up` (default %(default)s)")
    status.set_defaults(func=run_status)


def _devcluster() -> Any:
    """stretchfs.devcluster.cluster, imported when used: it pulls in Twisted, which the
    other `stretchfs` commands do without (so they start faster)."""
    from stretchfs.devcluster import cluster

    return cluster


def _say(text: str) -> None:
    print(text, flush=True)


def run_up(args: argparse.Namespace) -> int:
    """Start the cluster; in the foreground, stop it on Ctrl-C."""
    if args.prisms < 0 or args.stores < 0 or args.prisms + args.stores > 200:
        _say("stretchfs dev up: --prisms and --stores must be 0..200 in all")
        return 2
    devcluster = _devcluster()
    if not 1 <= args.masters <= devcluster.MAX_MASTERS:
        _say("stretchfs dev up: --masters must be 1..{}".format(devcluster.MAX_MASTERS))
        return 2
    from stretchfs.config import MAX_PRISM_WORKERS

    if not 1 <= args.prism_workers <= MAX_PRISM_WORKERS:
        _say("stretchfs dev up: --prism-workers must be 1..{}".format(MAX_PRISM_WORKERS))
        return 2
    cluster = devcluster.LocalCluster(args.workdir, prisms=args.prisms, stores=args.stores,
                                      masters=max(args.masters, 2) if args.ha else args.masters,
                                      say=_say, ha=args.ha)
    cluster.nginx, cluster.prism_workers = args.nginx, args.prism_workers
    stopping = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        state = cluster.up(detach=args.detach, timeout=args.timeout)
    except Exception as exc:
        _say("stretchfs dev up: {}".format(exc))
        return 1
    _print_ready(state)
    if args.detach:
        _say("detached; state in {}; stop with: stretchfs dev down --workdir {}".format(
            cluster.state_path, args.workdir))
        return 0
    _say("press Ctrl-C to stop the cluster")
    while not stopping["now"]:
        dead = [p.name for p in cluster.processes.values()
                if p.process is not None and p.process.poll() is not None]
        if dead:
            _say("node(s) exited: {} (see their logs in {}/log)".format(
                ", ".join(dead), cluster.workdir))
            break
        time.sleep(0.2)
    _say("stopping the cluster...")
    cluster.down()
    _say("stopped")
    return 0


def _print_ready(state: dict[str, Any]) -> None:
    _say("")
    _say("StretchFS local cluster ready ({})".format(state["workdir"]))
    for node in state["nodes"]:
        _say("  {:<8} {:<7} {}".format(node["name"], node["role"], node["url"]))
    _say("  redis    {}".format(state["redis"]["url"]))
    if state["redis"].get("sentinels"):
        _say("  sentinels {} (service {})".format(", ".join(state["redis"]["sentinels"]),
                                                  state["redis"]["service"]))
    for front in state.get("nginx") or []:
        _say("  {:<8} nginx   {}".format(front["name"], front["url"]))
    if state.get("user"):
        _say("user: {} password: {}".format(state["user"]["username"],
                                             state["user"]["password"]))
    if state.get("prism_url"):
        _say("")
        _say("Try it:")
        _say(_devcluster().usage_example(state))
    _say("")


def run_down(args: argparse.Namespace) -> int:
    """Stop a detached cluster; with none running, say so in one line (exit 0 either way)."""
    stopped = _devcluster().stop_detached(args.workdir, say=_say)
    if stopped:
        _say("{} process(es) stopped".format(stopped))
    else:
        _say(NO_CLUSTER.format(args.workdir))
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print the health of each node; exit 1 unless all are healthy.

    With no process of the cluster running, one line says so (exit 1).
    """
    devcluster = _devcluster()
    if not devcluster.running_processes(devcluster.load_state(args.workdir) or {}):
        _say(NO_CLUSTER.format(args.workdir))
        return 1
    rows = devcluster.cluster_status(args.workdir)
    for name, role, url, _status, summary in rows:
        _say("{:<8} {:<7} {:<28} {}".format(name, role, url, summary))
    return 0 if all(row[3] == 200 for row in rows) else 1
