"""Config loading and validation."""

from __future__ import annotations

import glob
import os

import pytest

from stretchfs.config import (
    CLUSTER_KEY_ENV,
    EXAMPLE_CLUSTER_KEY,
    MasterConfig,
    PrismConfig,
    StoreConfig,
    describe_keys,
    load_config,
    parse_config,
    parse_size,
)
from stretchfs.errors import ConfigError
from tests.helpers import CLUSTER_KEY, minimal_config


@pytest.mark.parametrize("role,cls", [("master", MasterConfig), ("prism", PrismConfig),
                                      ("store", StoreConfig)])
def test_example_configs_load(repo_root: str, role: str, cls: type) -> None:
    """Every example config in etc/ loads into its role's settings once given a real key."""
    config = load_config(role, os.path.join(repo_root, "etc", role + ".toml"),
                         environ={CLUSTER_KEY_ENV: CLUSTER_KEY})
    assert isinstance(config, cls)


@pytest.mark.parametrize("role", ["master", "prism", "store"])
def test_example_configs_do_not_start_without_a_real_key(repo_root: str, role: str) -> None:
    """An example config used as shipped is refused: it carries no usable cluster key."""
    with pytest.raises(ConfigError, match=r"\[cluster\] key"):
        load_config(role, os.path.join(repo_root, "etc", role + ".toml"), environ={})


@pytest.mark.parametrize("role,cls", [("master", MasterConfig), ("prism", PrismConfig),
                                      ("store", StoreConfig)])
def test_example_configs_document_every_key(repo_root: str, role: str, cls: type) -> None:
    """Each example config mentions every key its role accepts, so operators see them all."""
    with open(os.path.join(repo_root, "etc", role + ".toml"), encoding="utf-8") as handle:
        text = handle.read()
    for section, key, _default, doc in describe_keys(cls):
        assert "[{}]".format(section) in text
        assert "{} =".format(key) in text, "{}.{} missing from etc/{}.toml".format(
            section, key, role)
        assert doc


def test_defaults_fill_missing_keys() -> None:
    """Keys left out of the file take their documented defaults."""
    config = parse_config("prism", minimal_config("prism"), "p.toml", {})
    assert config.cluster.replicas == 2
    assert config.ping.interval == 0.5
    assert config.cluster.key == CLUSTER_KEY


def test_environment_overrides_cluster_key() -> None:
    """$STRETCHFS_CLUSTER_KEY replaces the key written in the file."""
    config = parse_config("store", minimal_config("store"), "s.toml",
                          {CLUSTER_KEY_ENV: "from-the-environment-0123456789abcdef"})
    assert config.cluster.key == "from-the-environment-0123456789abcdef"


def test_sizes_accept_units() -> None:
    """Sizes are bytes or strings with binary/decimal units."""
    assert parse_size(10) == 10
    assert parse_size("64 MiB") == 64 * 1024 * 1024
    assert parse_size("1GB") == 1000**3
    for bad in ("lots", -1, "5 XB", True):
        with pytest.raises(ValueError):
            parse_size(bad)


CLUSTER_SECTION = "\n[cluster]\nkey = '{}'\n".format(CLUSTER_KEY)
BAD_CONFIGS = [
    ("unknown key", "master", "[node]\ncolour = 'red'\n", "[node] colour: unknown key"),
    ("unknown section", "master", "[nodes]\nname = 'x'\n", "nodes: unknown key"),
    ("wrong type", "prism", "[ping]\ninterval = 'fast'\n", "[ping] interval: expected a number"),
    ("bad value", "prism", "[ping]\nmisses = 0\n",
     "[ping] misses: expected a number greater than 0"),
    ("bad endpoint", "master", "[http]\nlisten = 'port 80'\n",
     "[http] listen: expected a Twisted endpoint"),
    ("bad name", "master", "[node]\nname = 'Store One'\n", "[node] name: expected a name"),
    ("bad size", "store", "[store]\nroot = '/tmp/x'\nmin_free = 'plenty'\n",
     "[store] min_free: expected a size"),
    ("section not a table", "master", "node = 3\n", "[node]: expected a table"),
    ("timeout not below interval", "store",
     "[store]\nroot = '/tmp/x'\n[ping]\ninterval = 0.5\ntimeout = 1.0\n",
     "[ping] timeout: expected less than interval"),
    ("key of a role it does not have", "master", "[store]\nroot = '/tmp/x'\n",
     "store: unknown key"),
]


@pytest.mark.parametrize("label,role,text,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_names_file_key_and_expectation(label: str, role: str, text: str,
                                                   message: str) -> None:
    """A bad config raises one ConfigError naming the file, the key and what was expected."""
    with pytest.raises(ConfigError) as info:
        parse_config(role, text + CLUSTER_SECTION, "etc/x.toml", {})
    error = str(info.value)
    assert error.startswith("etc/x.toml: ")
    assert message in error
    assert "\n" not in error


def test_broken_toml_is_one_line() -> None:
    """A file that is not TOML gives one line naming the file."""
    with pytest.raises(ConfigError, match=r"^etc/x.toml: not valid TOML"):
        parse_config("master", "[node\n", "etc/x.toml", {})


def test_missing_cluster_key_is_refused() -> None:
    """A config without a cluster key (and no environment override) is refused."""
    with pytest.raises(ConfigError, match=r"\[cluster\] key"):
        parse_config("master", "[node]\nname = 'm1'\n", "m.toml", {})


@pytest.mark.parametrize("where", ["file", "environment"])
def test_example_cluster_key_is_refused(where: str) -> None:
    """The example key once shipped in etc/*.toml is public, so a node refuses it."""
    text = "[cluster]\nkey = '{}'\n".format(EXAMPLE_CLUSTER_KEY)
    environ = {}
    if where == "environment":
        text, environ = minimal_config("master"), {CLUSTER_KEY_ENV: EXAMPLE_CLUSTER_KEY}
    with pytest.raises(ConfigError, match=r"^m.toml: .*example key") as info:
        parse_config("master", text, "m.toml", environ)
    assert "\n" not in str(info.value)


def test_cluster_key_needs_32_characters() -> None:
    """A cluster key shorter than 32 characters is refused; 32 characters are enough."""
    with pytest.raises(ConfigError, match=r"\[cluster\] key: expected at least 32 characters"):
        parse_config("store", minimal_config("store"), "s.toml", {CLUSTER_KEY_ENV: "k" * 31})
    config = parse_config("store", minimal_config("store"), "s.toml", {CLUSTER_KEY_ENV: "k" * 32})
    assert config.cluster.key == "k" * 32


def test_missing_file_is_one_line(tmp_path) -> None:
    """A missing config file gives one line naming it."""
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_config("master", path, environ={})


def test_min_copies_above_replicas_is_refused() -> None:
    """A prism cannot require more copies than the cluster's `replicas` (2 by default)."""
    text = minimal_config("prism", extra="[prism]\nmin_copies = 3\n")
    with pytest.raises(ConfigError, match="min_copies"):
        parse_config("prism", text, "p.toml", {})


def test_every_role_has_an_example(repo_root: str) -> None:
    """etc/ holds exactly one example config per role."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(repo_root, "etc", "*.toml")))
    assert names == ["master.toml", "prism.toml", "store.toml"]


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "not PEM"])
def test_an_unusable_tls_ca_file_is_one_config_error(tmp_path, content) -> None:
    """A [tls] ca_file that is missing or holds no certificate stops the node with one line."""
    from stretchfs.config import load_config

    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    path = tmp_path / "prism.toml"
    path.write_text(minimal_config("prism", extra='[tls]\nca_file = "{}"\n'.format(ca_file)))
    with pytest.raises(ConfigError, match=r"\[tls\] ca_file: .*ca\.pem"):
        load_config("prism", str(path), {"STRETCHFS_CLUSTER_KEY": CLUSTER_KEY})


def _cluster(lines: str) -> str:
    return "[cluster]\nkey = '{}'\n{}\n".format(CLUSTER_KEY, lines)


def test_master_urls_default_to_the_single_master_url() -> None:
    """`master_url` alone becomes a one-entry `master_urls`; neither gives the default."""
    one = parse_config("prism", _cluster("master_url = 'http://m1:8160/'"), "x.toml", {})
    assert one.cluster.master_urls == ("http://m1:8160",)
    assert one.cluster.master_url == "http://m1:8160"
    none = parse_config("prism", _cluster(""), "x.toml", {})
    assert none.cluster.master_urls == ("http://127.0.0.1:8160",)


def test_master_urls_keep_their_order() -> None:
    """`master_urls` is kept in order and `master_url` is its first entry."""
    config = parse_config("store", _cluster("master_urls = ['http://b:1', 'https://a:2']"),
                          "x.toml", {})
    assert config.cluster.master_urls == ("http://b:1", "https://a:2")
    assert config.cluster.master_url == "http://b:1"


@pytest.mark.parametrize("lines,message", [
    ("master_urls = ['http://a:1', 'http://a:1/']", "[cluster] master_urls: 'http://a:1' is "
     "listed twice"),
    ("master_urls = ['http://a:1', 'ftp://b']", "[cluster] master_urls: expected http:// "
     "or https:// URLs, got 'ftp://b'"),
    ("master_urls = 'http://a:1'", "[cluster] master_urls: expected a list of strings, got "
     "'http://a:1'"),
    ("master_url = 'http://a:1'\nmaster_urls = ['http://b:1']",
     "[cluster] master_url: expected either master_url or master_urls, got both"),
])
def test_bad_master_urls_are_one_config_error(lines: str, message: str) -> None:
    """Duplicates, a malformed entry or both keys set: one ConfigError line."""
    with pytest.raises(ConfigError) as info:
        parse_config("prism", _cluster(lines), "x.toml", {})
    assert str(info.value) == "x.toml: " + message
