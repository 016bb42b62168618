"""The `stretchfs user|peer|purchase` commands: master resolution and output."""

from __future__ import annotations

import argparse
import io

import pytest
import pytest_twisted

from stretchfs.cli import peers, purchases, users
from stretchfs.cli.main import build_parser
from stretchfs.errors import ConfigError
from stretchfs.master.cliconn import resolve_master, run_command
from tests.helpers import CLUSTER_KEY, minimal_config, write_config


def _args(**values) -> argparse.Namespace:
    base = {"config": None, "master": None}
    base.update(values)
    return argparse.Namespace(**base)


def test_master_url_comes_from_a_master_config_listener(tmp_path) -> None:
    """A master's own config gives its listener's URL and the cluster key."""
    text = minimal_config("master").replace("tcp:0:interface=127.0.0.1",
                                            "tcp:8160:interface=127.0.0.7")
    path = write_config(str(tmp_path), "master", text)
    assert resolve_master(_args(config=path), {}) == (("http://127.0.0.7:8160",),
                                                      CLUSTER_KEY, "")


def test_master_url_comes_from_a_store_config(tmp_path) -> None:
    """A store's config gives its [cluster] master_url."""
    path = write_config(str(tmp_path), "store", minimal_config(
        "store", master_url="http://10.0.0.1:8160"))
    assert resolve_master(_args(config=path), {}) == (("http://10.0.0.1:8160",),
                                                      CLUSTER_KEY, "")


def test_every_master_comes_from_a_store_config_listing_several(tmp_path) -> None:
    """A store's config listing several masters gives all of them, in order."""
    text = minimal_config("store").replace(
        'master_url = "http://127.0.0.1:1"',
        'master_urls = ["http://10.0.0.2:8160", "http://10.0.0.1:8160"]')
    path = write_config(str(tmp_path), "store", text)
    assert resolve_master(_args(config=path), {})[0] == ("http://10.0.0.2:8160",
                                                         "http://10.0.0.1:8160")


def test_master_flag_takes_the_key_from_the_environment() -> None:
    """--master URL uses $STRETCHFS_CLUSTER_KEY; without a key it is a config error."""
    env = {"STRETCHFS_CLUSTER_KEY": CLUSTER_KEY}
    assert resolve_master(_args(master="http://m:1/"), env) == (("http://m:1",), CLUSTER_KEY, "")
    with pytest.raises(ConfigError):
        resolve_master(_args(master="http://m:1"), {})
    with pytest.raises(ConfigError):
        resolve_master(_args(), env)
    with pytest.raises(ConfigError):
        resolve_master(_args(master="m:1"), env)


@pytest.mark.parametrize("key", ["change-me-to-a-long-random-secret", "k" * 31])
def test_master_flag_refuses_a_public_or_short_key(key: str) -> None:
    """--master URL with the example key or a key under 32 characters is a config error."""
    with pytest.raises(ConfigError, match=r"^\$STRETCHFS_CLUSTER_KEY: "):
        resolve_master(_args(master="http://m:1"), {"STRETCHFS_CLUSTER_KEY": key})


def test_parser_knows_the_commands() -> None:
    """`user`, `purchase` and `peer` subcommands parse their arguments."""
    parser = build_parser()
    args = parser.parse_args(["peer", "update", "store1", "--inactive", "--writable",
                              "--master", "http://m:1"])
    assert (args.name, args.active, args.writable) == ("store1", False, True)
    assert parser.parse_args(["user", "create", "bob"]).name == "bob"
    assert parser.parse_args(["purchase", "prune", "--master", "http://m:1"]).hash == "prune"
    assert parser.parse_args(["user", "create", "bob", "--operator"]).operator is True
    assert parser.parse_args(["user", "operator", "bob", "--revoke"]).revoke is True
    with pytest.raises(SystemExit):
        parser.parse_args(["peer", "update", "s1", "--active", "--inactive"])


@pytest_twisted.ensureDeferred
async def test_commands_print_results_and_errors(master) -> None:
    """Commands print their result; a master error is one line on stderr and exit 1."""
    client = master.client()
    out, err = io.StringIO(), io.StringIO()
    assert await run_command(client, users.create_user, _args(name="zoe", operator=False),
                             out, err) == 0
    assert "user zoe created" in out.getvalue() and "password: " in out.getvalue()
    assert await run_command(client, users.set_operator, _args(name="zoe", revoke=False),
                             out, err) == 0
    assert "user zoe is now an operator" in out.getvalue()
    assert await run_command(client, users.list_users, _args(), out, err) == 0
    assert "zoe" in out.getvalue().splitlines()[-1]
    assert await run_command(client, users.create_user, _args(name="zoe", operator=True),
                             out, err) == 1
    assert "master answered 409" in err.getvalue()
    await client.register_peer({"name": "store1", "role": "store", "host": "h", "port": 1})
    update = _args(name="store1", active=None, writable=False)
    assert await run_command(client, peers.update_peer, update, out, err) == 0
    assert "writable=no" in out.getvalue()
    assert await run_command(client, peers.list_peers, _args(), out, err) == 0
    assert await run_command(client, peers.remove_peer, _args(name="store1", force=False), out,
                             err) == 0
    assert await run_command(client, purchases.prune_purchases, _args(), out, err) == 0
    assert "pruned 0 expired purchase(s)" in out.getvalue()
    assert await run_command(client, users.deactivate_user, _args(name="zoe"), out, err) == 0
