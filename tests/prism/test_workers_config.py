"""`[http] workers` of the prism: default, range and the listeners it needs."""

from __future__ import annotations

import pytest

from stretchfs.config import PrismConfig, parse_config, worker_reader_name
from stretchfs.errors import ConfigError
from tests.helpers import CLUSTER_KEY

KEY = "\n[cluster]\nkey = '{}'\n".format(CLUSTER_KEY)


def _prism(http: str, node: str = "") -> PrismConfig:
    config = parse_config("prism", node + "[http]\n" + http + KEY, "etc/prism.toml", {})
    assert isinstance(config, PrismConfig)
    return config


def test_one_worker_by_default() -> None:
    """Without the key a prism is one process, any listener allowed."""
    assert _prism('listen = "unix:/tmp/p.sock"\n').http.workers == 1


def test_workers_are_read_for_tcp_and_ssl_listeners() -> None:
    """Two workers on a tcp: and an ssl: listener load."""
    config = _prism('listen = ["tcp:8080", "ssl:8443:privateKey=k.pem:certKey=c.pem"]\n'
                    "workers = 2\n")
    assert config.http.workers == 2


@pytest.mark.parametrize("http,error", [
    ("workers = 0\n", "[http] workers: expected 1-64"),
    ("workers = 65\n", "[http] workers: expected 1-64"),
    ('workers = "2"\n', "[http] workers: expected an integer"),
    ('listen = ["tcp:8080", "unix:/tmp/p.sock"]\nworkers = 2\n',
     "[http] workers: more than 1 worker needs tcp: or ssl: listeners, got 'unix:/tmp/p.sock'"),
])
def test_bad_workers_are_one_line(http: str, error: str) -> None:
    """A bad or impossible `workers` is one ConfigError naming the key."""
    with pytest.raises(ConfigError) as caught:
        _prism(http)
    assert str(caught.value).startswith("etc/prism.toml: ") and error in str(caught.value)


def test_a_name_too_long_for_the_workers_reader_names_is_refused() -> None:
    """Worker N reads the feeds as <name>-wN, which must still be a node name."""
    name = "p" * 61
    assert _prism("workers = 1\n", '[node]\nname = "{}"\n'.format(name)).node.name == name
    with pytest.raises(ConfigError, match="too long for 10 workers"):
        _prism("workers = 10\n", '[node]\nname = "{}"\n'.format(name))


def test_worker_reader_names() -> None:
    """The first worker reads as the node itself, the others with a -wN suffix."""
    assert [worker_reader_name("prism1", n) for n in (1, 2, 12)] == [
        "prism1", "prism1-w2", "prism1-w12"]
