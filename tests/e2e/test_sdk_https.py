"""The public Node SDK (`stretchfs-sdk` from npm) works against `stretchfs dev up` over HTTPS."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from stretchfs.devcluster.cluster import LocalCluster

SDK_VERSIONS = ["4.1.0", "3.1.5"]
CONTENT = b"hello stretchfs over https\n"
FLOW = os.path.join(os.path.dirname(__file__), "sdk", "flow.js")


def _install_sdk(folder: str, version: str) -> str:
    """`npm install stretchfs-sdk@version` into `folder`; skips with npm's own words on failure."""
    os.makedirs(folder, exist_ok=True)
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                               "--no-save", "stretchfs-sdk@" + version], cwd=folder,
                              capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install stretchfs-sdk@{} took over 240 s (registry unreachable?)"
                    .format(version))
    if done.returncode != 0:
        pytest.skip("npm install stretchfs-sdk@{} failed: {}".format(
            version, (done.stderr or done.stdout).strip()[-400:]))
    return folder


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory) -> Any:
    """A fresh local cluster (1 prism, 2 stores), set up by `dev up` alone."""
    cluster = LocalCluster(str(tmp_path_factory.mktemp("sdk") / "cluster"), prisms=1, stores=2,
                           say=lambda text: None)
    try:
        yield cluster.up(timeout=120)
    finally:
        cluster.down()


@pytest.mark.parametrize("version", SDK_VERSIONS)
def test_public_sdk_runs_the_whole_flow_over_https(dev_cluster, tmp_path, version) -> None:
    """stretchfs-sdk logs in, uploads (2 copies), purchases, downloads through the redirect
    (whole and a range), follows a static link, is refused for a foreign referrer, reads and
    removes the purchase (then 404) and logs out (the session then refused)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for the SDK test (scripts/bootstrap.sh test "
                    "installs them as root)")
    folder = _install_sdk(str(tmp_path / "sdk"), version)
    upload = tmp_path / "hello.txt"
    upload.write_bytes(CONTENT)
    state = dev_cluster
    assert state["prism_https_url"].startswith("https://")
    done = subprocess.run(["node", FLOW, folder, state["prism_https_url"],
                           state["user"]["username"], state["user"]["password"], str(upload)],
                          capture_output=True, text=True, timeout=120)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    assert seen["login"] is True
    assert seen["upload"]["copies"] == 2
    assert (seen["detail"]["count"], seen["detail"]["exists"]) == (2, True)
    token = seen["purchase"]["token"]
    stores = [n["url"] for n in state["nodes"] if n["role"] == "store"]
    for name, expected in (("download", CONTENT), ("range", CONTENT[2:7]),
                           ("static", CONTENT)):
        reply = seen[name]
        assert reply["status"] == (206 if name == "range" else 200), (name, reply)
        assert base64.b64decode(reply["body"]) == expected, name
        # Redirected to the URL (and scheme) a store registered.
        assert [r["status"] for r in reply["redirects"]] == [302]
        assert any(reply["redirects"][0]["location"].startswith(url + "/") for url in stores)
    assert seen["range"]["contentRange"] == "bytes 2-6/{}".format(len(CONTENT))
    assert seen["foreign"]["status"] == 403
    assert (seen["purchaseDetail"]["status"], seen["purchaseDetail"]["body"]["token"]) == \
        (200, token)
    assert seen["remove"]["count"] == 1
    assert seen["afterRemove"]["status"] == 404
    assert seen["afterLogout"]["status"] == 401
