"""Free loopback ports for local clusters and tests."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> tuple[int, int]:
    """A TCP port and a UDP port, both free right now on 127.0.0.1."""
    tcp = free_port(socket.SOCK_STREAM)
    udp = free_port(socket.SOCK_DGRAM)
    return tcp, udp
