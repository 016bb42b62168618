"""twistd entry point of the prism: options and makeService."""

from __future__ import annotations

from twisted.application.service import IService

from stretchfs.prism.service import build_prism_service
from stretchfs.tapbase import RoleOptions, real_service


class Options(RoleOptions):
    """Options of `twistd stretchfs-prism`."""

    role = "prism"


def makeService(options: Options) -> IService:
    """Build the prism with the real reactor, Redis pool, HTTP client and thread pool."""
    return real_service(options, build_prism_service, max_per_host=64, udp=True)
