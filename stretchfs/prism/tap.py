"""twistd entry point of the prism: options and makeService."""

from __future__ import annotations

from typing import cast

from twisted.application.service import IService

from stretchfs.config import PrismConfig
from stretchfs.prism.service import build_prism_service
from stretchfs.tapbase import RoleOptions


class Options(RoleOptions):
    """Options of `twistd stretchfs-prism`."""

    role = "prism"


def makeService(options: Options) -> IService:
    """Build the prism with the real reactor, Redis pool and HTTP client."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorThreads

    from stretchfs.pingnet.peers import Peers
    from stretchfs.redisstore import connect_cluster_redis
    from stretchfs.threads import thread_runner
    from stretchfs.wire.http import make_http_client

    config = options.settings
    assert isinstance(config, PrismConfig)
    redis = connect_cluster_redis(config.redis, reactor)
    return build_prism_service(config, reactor=reactor, redis=redis, udp=True,
                               http=make_http_client(reactor, max_per_host=64,
                                                        ca_file=config.tls.ca_file),
                               peers=Peers(self_name=config.node.name),
                               run_blocking=thread_runner(cast(IReactorThreads, reactor)))
