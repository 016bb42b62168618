"""twistd entry point of the master: options and makeService."""

from __future__ import annotations

from typing import cast

from twisted.application.service import IService

from stretchfs.config import MasterConfig
from stretchfs.master.service import build_master_service
from stretchfs.tapbase import RoleOptions


class Options(RoleOptions):
    """Options of `twistd stretchfs-master`."""

    role = "master"


def makeService(options: Options) -> IService:
    """Build the master with the real reactor, Redis pool and HTTP client."""
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorThreads

    from stretchfs.redisstore import connect_cluster_redis
    from stretchfs.threads import thread_runner
    from stretchfs.wire.http import make_http_client

    config = options.settings
    assert isinstance(config, MasterConfig)
    redis = connect_cluster_redis(config.redis, reactor)
    return build_master_service(config, reactor=reactor, redis=redis,
                                run_blocking=thread_runner(cast(IReactorThreads, reactor)),
                                http=make_http_client(reactor, ca_file=config.tls.ca_file))
