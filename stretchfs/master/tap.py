"""twistd entry point of the master: options and makeService."""

from __future__ import annotations

from twisted.application.service import IService

from stretchfs.master.service import build_master_service
from stretchfs.tapbase import RoleOptions, real_service


class Options(RoleOptions):
    """Options of `twistd stretchfs-master`."""

    role = "master"


def makeService(options: Options) -> IService:
    """Build the master with the real reactor, Redis pool, HTTP client and thread pool."""
    return real_service(options, build_master_service)
