"""The chaos verdict watch: which down verdicts count as false."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from stretchfs.chaos.watch import VerdictWatch

# The nodes list store3 as down; whether it is registered depends on the test.
STATUS = {"peers": [{"name": "store1", "available": True},
                    {"name": "store3", "available": False}]}


@pytest.fixture
def serve() -> Iterator[Callable[[list[str]], str]]:
    """Starts loopback HTTP servers answering as the master (/peers: `registered`) and as
    every node (/pingnet/status); all are shut down after the test."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(registered: list[str]) -> str:
        registry = json.dumps({"peers": [{"name": name} for name in registered]}).encode()
        status = json.dumps(STATUS).encode()

        class Answers(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = registry if self.path == "/peers" else status
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return "http://127.0.0.1:{}".format(server.server_address[1])

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _nodes(url: str, names: list[str]) -> list[dict[str, Any]]:
    return [{"name": "master", "role": "master", "url": url}] + [
        {"name": name, "role": "prism" if name.startswith("prism") else "store", "url": url}
        for name in names]


def test_a_removed_dead_peer_is_not_falsely_marked_down(serve) -> None:
    """A peer removed from the registry (`peer remove`), still listed down by the nodes until
    their next registry download, is no false verdict and no observer."""
    url = serve(["prism1", "store1"])
    watch = VerdictWatch(_nodes(url, ["prism1", "store1", "store3"]), "key")
    assert watch.view("prism1") == {"store1": True, "store3": False}
    assert watch.false_downs(set()) == set()
    assert watch.view("store3") is None
    assert watch.all_agree(["prism1", "store3"], "store1", True)


def test_a_registered_peer_seen_down_is_a_false_verdict(serve) -> None:
    """A registered peer that some node lists as down is reported."""
    url = serve(["prism1", "store1", "store3"])
    watch = VerdictWatch(_nodes(url, ["prism1"]), "key")
    watch.view("prism1")
    assert watch.false_downs(set()) == {("prism1", "store3")}
