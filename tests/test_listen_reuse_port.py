"""Listeners with SO_REUSEPORT (prism workers): several bind one port, others cannot."""

from __future__ import annotations

import errno
import socket

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import Site

from stretchfs.web.listen import ListeningService, tcp_address


def test_tcp_address_of_tcp_and_ssl_endpoints() -> None:
    """Interface, port and backlog of the endpoints workers can share; others refused."""
    assert tcp_address("tcp:8080:interface=127.0.0.2") == ("127.0.0.2", 8080, 50)
    assert tcp_address(r"tcp:0:interface=\:\:1:backlog=9") == ("::1", 0, 9)
    assert tcp_address("ssl:8443:interface=127.0.0.3:privateKey=k:certKey=c") == (
        "127.0.0.3", 8443, 50)
    for bad in ("unix:/tmp/x", "tcp:http", "tcp:80:colour=red"):
        with pytest.raises(ValueError):
            tcp_address(bad)


def test_two_services_share_a_port_that_a_plain_bind_cannot_take() -> None:
    """The first binds tcp:0 with SO_REUSEPORT, a second joins its port; a socket
    without SO_REUSEPORT is refused; stopping closes both sockets."""
    reactor = MemoryReactorClock()
    site = Site(Resource())
    first = ListeningService(reactor, "tcp:0:interface=127.0.0.1", site, "prism",
                             reuse_port=True)
    first.startService()
    port = first.address.port
    second = ListeningService(reactor, "tcp:0:interface=127.0.0.1", site, "prism",
                              reuse_port=True, port=port)
    second.startService()
    assert second.address.port == port
    with socket.socket() as plain, pytest.raises(OSError) as refused:
        plain.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE
    first.stopService()
    second.stopService()
    reactor.advance(0)
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", port))
