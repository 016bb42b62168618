"""twistd entry point of the store: options and makeService."""

from __future__ import annotations

from twisted.application.service import IService

from stretchfs.store.service import build_store_service
from stretchfs.tapbase import RoleOptions, real_service


class Options(RoleOptions):
    """Options of `twistd stretchfs-store`."""

    role = "store"


def makeService(options: Options) -> IService:
    """Build the store with the real reactor, Redis pool, HTTP client and thread pool."""
    from twisted.internet import reactor

    return real_service(options, build_store_service, udp=True,
                        call_from_thread=reactor.callFromThread)  # type: ignore[attr-defined]
