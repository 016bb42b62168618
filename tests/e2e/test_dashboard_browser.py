"""The dashboard in a real headless Chromium over a real local cluster.

Chromium is driven through the DevTools protocol (`--remote-debugging-port`,
one websocket, `websocket-client`); nothing downloads a browser.  The
screenshots of each state are saved in the test's temp dir (kept with
`-o tmp_path_retention_policy=all`); docs/dashboard.png is one of them.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any, Callable

import pytest

from stretchfs.chaos.cluster import ClusterHandle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (sh scripts/bootstrap.sh test "
                             "installs it as root: apt-get install chromium)")
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")


class Chromium:
    """One headless Chromium page, driven through the DevTools protocol."""

    def __init__(self, profile: str) -> None:
        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--user-data-dir=" + profile,
             "--window-size=1500,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        port = _wait(lambda: _read_first_line(port_file), 30, "Chromium's DevTools port")
        targets = json.load(urllib.request.urlopen(
            "http://127.0.0.1:{}/json/list".format(port), timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                                  suppress_origin=True)
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events are skipped)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError("{}: {}".format(method, message["error"]))
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result["result"].get("value")

    def screenshot(self, path: str) -> None:
        """Save the page as a PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))

    def close(self) -> None:
        """Close the socket and end the browser we started."""
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _read_first_line(path: str) -> str | None:
    try:
        with open(path) as handle:
            line = handle.readline().strip()
    except OSError:
        return None
    return line or None


def _wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after {} s waiting for {}".format(timeout, what))


def _cells(browser: Chromium, selector: str) -> dict[str, str]:
    """name -> text of the `selector` cell of each node row on the page."""
    return browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#nodes tbody tr')].map("
        "r => [r.dataset.node, r.querySelector({}).textContent]))".format(json.dumps(selector)))


def _stretchfs(*args: str, repo_root: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=repo_root, REDIS_URL="")
    return subprocess.run([sys.executable, "-m", "stretchfs.cli.main", *args],
                          capture_output=True, text=True, timeout=180, env=env)


def test_dashboard_shows_a_killed_store_down_and_back(tmp_path, repo_root: str) -> None:
    """Signed in with the cluster key, the dashboard shows every node ok, a SIGKILLed store
    down within seconds (then voted down by the ping net, and down in the repair table),
    and the restarted store ok again."""
    workdir = str(tmp_path / "cluster")
    up = _stretchfs("dev", "up", "--detach", "--prisms", "1", "--stores", "2",
                    "--workdir", workdir, repo_root=repo_root)
    browser = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        cluster = ClusterHandle(workdir)
        master_url = cluster.nodes("master")[0]["url"]
        browser = Chromium(str(tmp_path / "chromium"))
        browser.call("Page.navigate", url=master_url + "/")
        _wait(lambda: browser.evaluate("!!document.getElementById('password')"), 20,
              "the sign-in form")
        browser.screenshot(str(tmp_path / "0-sign-in.png"))
        browser.evaluate("document.getElementById('password').value = {};"
                         "document.getElementById('login').submit(); true".format(
                             json.dumps(cluster.state["cluster_key"])))
        names = sorted(n["name"] for n in cluster.nodes() if n["role"] != "master")

        def all_ok() -> bool:
            health = _cells(browser, ".health") if browser.evaluate(
                "!!document.getElementById('nodes')") else {}
            net = _cells(browser, ".pingnet") if health else {}
            return sorted(health) == names and set(health.values()) == {"ok"} and all(
                text.startswith("available") for text in net.values())

        _wait(all_ok, 60, "every node ok on the dashboard")
        browser.screenshot(str(tmp_path / "1-all-ok.png"))
        store = cluster.nodes("store")[0]["name"]
        cluster.signal(store, signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: _cells(browser, ".health").get(store) == "down", 10,
              "{} shown down".format(store))
        assert time.monotonic() - killed < 10
        _wait(lambda: _cells(browser, ".pingnet").get(store, "").startswith("DOWN"), 30,
              "{} voted down by the ping net".format(store))
        _wait(lambda: browser.evaluate(
            "Array.from(document.querySelectorAll('#repair tr')).some((row) => "
            "row.cells[0].textContent === {} && "
            "row.cells[1].textContent.startsWith('down since'))".format(
                json.dumps("store " + store))), 10, "{} down in the repair table".format(store))
        browser.screenshot(str(tmp_path / "2-store-down.png"))
        cluster.wait_exit(store)
        cluster.start(store)
        _wait(all_ok, 60, "{} back on the dashboard".format(store))
        browser.screenshot(str(tmp_path / "3-store-back.png"))
    finally:
        if browser is not None:
            browser.close()
        _stretchfs("dev", "down", "--workdir", workdir, repo_root=repo_root)
