"""The twistd plugins are visible to twistd."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins


def test_every_role_is_a_twistd_plugin() -> None:
    """stretchfs-master, -prism and -store are among twistd's service makers."""
    from twisted import plugins

    names = {plugin.tapname for plugin in getPlugins(IServiceMaker, plugins)}
    assert {"stretchfs-master", "stretchfs-prism", "stretchfs-store"} <= names
