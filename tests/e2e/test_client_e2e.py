"""The Python client and the client CLI against a real local cluster."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from stretchfs.client import Client, NotFound


def _stretchfs(*args: str, env: dict[str, str] | None = None,
               **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stretchfs.cli.main", *args],
                          capture_output=True, text=True, timeout=300, env=env, **kwargs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ) -> Iterator[dict]:
    """A detached dev cluster (1 prism, 2 stores) for this module; always stopped."""
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    workdir = str(tmp_path_factory.mktemp("client") / "cluster")
    env = dict(os.environ, PYTHONPATH=repo_root)
    up = _stretchfs("dev", "up", "--detach", "--prisms", "1", "--stores", "2",
                    "--workdir", workdir, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with open(os.path.join(workdir, "cluster.json")) as handle:
            state = json.load(handle)
        state["env"] = env
        yield state
    finally:
        _stretchfs("dev", "down", "--workdir", workdir, env=env)


def test_client_round_trip_on_a_real_cluster(cluster, tmp_path) -> None:
    """Upload 8 MiB from a path, buy it, download it through the redirect, resume a partial."""
    source = tmp_path / "movie.mp4"
    data = os.urandom(8 * 1024 * 1024)
    source.write_bytes(data)
    sha1 = hashlib.sha1(data).hexdigest()
    with Client(cluster["prism_url"], cluster["user"]["username"],
                cluster["user"]["password"], timeout=20) as client:
        content = client.upload(str(source))
        assert (content.hash, content.size, content.copies) == (sha1, len(data), 2)
        assert client.detail(sha1).count == 2
        bought = client.purchase(sha1, "mp4", life=300)
        link = client.download_url(bought, "movie.mp4")
        whole = client.download(link, tmp_path / "whole.mp4")
        assert whole.sha1 == sha1 and whole.resumed_from == 0
        partial = tmp_path / "partial.mp4"
        partial.write_bytes(data[:3_000_000])
        resumed = client.download(link, partial)
        assert resumed.resumed_from == 3_000_000 and partial.read_bytes() == data
        assert client.purchase_remove(bought.token) == 1
        with pytest.raises(NotFound):
            client.download(link, tmp_path / "gone.mp4")


def _cli_env(cluster, tmp_path) -> dict[str, str]:
    return dict(cluster["env"], XDG_CONFIG_HOME=str(tmp_path / "config"),
                STRETCHFS_URL=cluster["prism_url"], STRETCHFS_USER=cluster["user"]["username"],
                STRETCHFS_PASSWORD=cluster["user"]["password"])


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit code, what the terminal showed)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stretchfs.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), shown.decode(errors="replace")


def test_cli_uploads_200_mib_with_progress_and_downloads_it_back_resuming(
        cluster, tmp_path) -> None:
    """`stretchfs upload` (bar on a terminal, none in a pipe), `purchase`, `download` resuming."""
    env = _cli_env(cluster, tmp_path)
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(1024 * 1024))
    sha1 = hashlib.sha1(big.read_bytes()).hexdigest()
    code, shown = _on_a_terminal(["upload", str(big)], env)
    assert code == 0 and "upload" in shown and "100%" in shown
    piped = _stretchfs("upload", "--json", str(big), env=env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert json.loads(piped.stdout)[0]["hash"] == sha1
    bought = _stretchfs("purchase", sha1, "--json", "--name", "big.bin", env=env)
    assert bought.returncode == 0, bought.stderr
    link = json.loads(bought.stdout)["url"]
    dest = tmp_path / "back.bin"
    first = subprocess.Popen([sys.executable, "-m", "stretchfs.cli.main", "download", link,
                              "-o", str(dest)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not dest.exists() or dest.stat().st_size < 1 << 20):
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    cut_at = dest.stat().st_size
    assert 0 < cut_at < 200 * 1024 * 1024
    done = _stretchfs("download", link, "-o", str(dest), "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sha1"] == sha1 and result["resumed_from"] == cut_at


def test_cli_login_saves_the_session_and_detail_reads_with_it(cluster, tmp_path) -> None:
    """`stretchfs login` keeps a 0600 session that later commands use without a password."""
    env = _cli_env(cluster, tmp_path)
    login = _stretchfs("login", env=env)
    assert login.returncode == 0, login.stderr
    session = tmp_path / "config" / "stretchfs" / "session.json"
    assert oct(session.stat().st_mode & 0o777) == "0o600"
    env.pop("STRETCHFS_PASSWORD")
    unknown = _stretchfs("detail", "0" * 40, env=env)
    assert unknown.returncode == 1 and "not found" in unknown.stdout
    assert _stretchfs("logout", env=env).returncode == 0
    assert not session.exists()


def test_readme_python_example_runs_as_written(cluster, tmp_path) -> None:
    """README's "Using StretchFS from Python" example runs against a local cluster."""
    repo_root = cluster["env"]["PYTHONPATH"]
    with open(os.path.join(repo_root, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme.split("## Using StretchFS from Python", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 10
    code = example.replace(".stretchfs-dev/cluster.json",
                           os.path.join(cluster["workdir"], "cluster.json"))
    code = code.replace("/tmp/README.copy.md", str(tmp_path / "README.copy.md"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=repo_root, env=cluster["env"])
    assert run.returncode == 0, run.stderr
    sha1, copies, link, same = run.stdout.split()
    assert len(sha1) == 40 and int(copies) == 2 and link.startswith("http") and same == "True"
