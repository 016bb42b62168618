"""At start-up a prism or store says, in one line each, which listed masters do not answer."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from stretchfs.config import parse_config
from stretchfs.devcluster.ports import free_port
from stretchfs.tapbase import check_masters
from tests.helpers import minimal_config


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:                     # noqa: N802 (http.server's name)
        self.send_response(503 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _config(urls: list[str]):
    listed = ", ".join('"{}"'.format(url) for url in urls)
    text = minimal_config("store").replace("master_url = ", "# master_url = ")
    text = text.replace("[cluster]", "[cluster]\nmaster_urls = [{}]".format(listed), 1)
    return parse_config("store", text, "test.toml")


def test_each_master_that_does_not_answer_gets_one_line(capsys) -> None:
    """A refused master and a silent one (accepts, never answers) are named, each within
    the deadline; a master that answers, even 503, is not."""
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    answering = "http://127.0.0.1:{}".format(server.server_address[1])
    refused = "http://127.0.0.1:{}".format(free_port())
    quiet = "http://127.0.0.1:{}".format(silent.getsockname()[1])
    try:
        started = time.monotonic()
        check_masters("store", _config([answering, refused, quiet]), timeout=0.5)
        assert time.monotonic() - started < 5.0
    finally:
        server.shutdown()
        server.server_close()
        silent.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert refused in lines[0] and "does not answer" in lines[0]
    assert quiet in lines[1] and "timed out" in lines[1]
    assert all(answering not in line for line in lines)
