"""twistd entry point of the store: options and makeService."""

from __future__ import annotations

from typing import cast

from twisted.application.service import IService

from stretchfs.config import StoreConfig
from stretchfs.store.service import build_store_service
from stretchfs.tapbase import RoleOptions


class Options(RoleOptions):
    """Options of `twistd stretchfs-store`."""

    role = "store"


def makeService(options: Options) -> IService:
    """Build the store with the real reactor, Redis pool and HTTP client."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorThreads

    from stretchfs.redisstore import connect_cluster_redis
    from stretchfs.threads import thread_runner
    from stretchfs.wire.http import make_http_client

    config = options.settings
    assert isinstance(config, StoreConfig)
    redis = connect_cluster_redis(config.redis, reactor)
    from stretchfs.pingnet.peers import Peers

    return build_store_service(config, reactor=reactor, redis=redis, udp=True,
                               http=make_http_client(reactor, ca_file=config.tls.ca_file),
                               peers=Peers(self_name=config.node.name),
                               run_blocking=thread_runner(cast(IReactorThreads, reactor)),
                               call_from_thread=cast(IReactorThreads, reactor).callFromThread)
