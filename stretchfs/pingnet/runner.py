"""A standalone ping-net node, for benchmarks: `python -m stretchfs.pingnet.runner`.

It runs the production `PingNet` service (same class, same defaults, real
txredisapi ballot box) without the rest of a prism or store, with a static
registry read from a JSON file (a list of `GET /peers` records).  Log events
go to stdout as JSON lines (info and above), which is how the benchmark
observes verdicts.  `--name a,b,c` runs several nodes in one process (one
reactor), so a benchmark of 64 nodes fits on a small machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from typing import Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True,
                        help="node name, or several comma-separated (one process, one reactor)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--registry", required=True, help="JSON file: list of peer records")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--prefix", default="sfs:")
    parser.add_argument("--key", required=True, help="cluster key")
    parser.add_argument("--observers", type=int, default=None, help="[ping] observers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one node until SIGTERM/SIGINT."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor

    from stretchfs.config import PingSettings
    from stretchfs.logs import event_as_json
    from stretchfs.pingnet.peers import PeerRecord, Peers
    from stretchfs.pingnet.service import PingNet
    from stretchfs.redisstore import connect_redis, parse_redis_url

    def write(event: dict[str, Any]) -> None:
        sys.stdout.write(event_as_json(event) + "\n")
        sys.stdout.flush()

    observer = FilteringLogObserver(cast(ILogObserver, write),
                                    [LogLevelFilterPredicate(LogLevel.info)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    with open(args.registry, encoding="utf-8") as handle:
        records = [PeerRecord.from_json(row) for row in json.load(handle)]
    for name in args.name.split(","):
        me = next(r for r in records if r.name == name)
        peers = Peers(self_name=name)
        peers.set_registry(records)
        redis = connect_redis(parse_redis_url(args.redis), reactor, 5.0, pool_size=2)
        settings = PingSettings(port=me.ping_port)
        if args.observers is not None:
            settings = replace(settings, observers=args.observers)
        net = PingNet(settings, self_name=name, host=args.host, cluster_key=args.key,
                      peers=peers, redis=redis, redis_prefix=args.prefix, reactor=reactor,
                      metrics_registry=CollectorRegistry(), rng=random.Random(),
                      on_unknown_sender=lambda: None)  # the registry is static
        reactor.callWhenRunning(net.startService)
        reactor.addSystemEventTrigger("before", "shutdown", net.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
