"""`[redis]` behind Sentinel: sentinels, service and min_replica_acks."""

from __future__ import annotations

import pytest

from stretchfs.config import parse_config
from stretchfs.errors import ConfigError
from tests.helpers import minimal_config

URL_LINE = 'url = "redis://127.0.0.1:1/0"'


def _with_redis(role: str, *lines: str) -> str:
    return minimal_config(role).replace(URL_LINE, "\n".join((URL_LINE,) + lines))


def test_sentinels_as_one_string_or_a_list() -> None:
    """Sentinels parse from "host:port, host:port" and from a TOML list alike."""
    one = parse_config("master", _with_redis("master", 'sentinels = "10.0.0.1:26379, '
                                             'h2:26380"', 'service = "stretchfs"'), "m", {})
    listed = parse_config("master", _with_redis("master", 'sentinels = ["10.0.0.1:26379", '
                                                '"h2:26380"]', 'service = "stretchfs"'),
                          "m", {})
    assert one.redis.sentinels == listed.redis.sentinels == ("10.0.0.1:26379", "h2:26380")
    assert one.redis.service == "stretchfs"


@pytest.mark.parametrize("value,message", [
    ('"10.0.0.1"', "expected host:port"), ('"h:0"', "expected host:port"),
    ('"h:26379, h:26379"', "listed twice"), ("26379", "expected"),
])
def test_bad_sentinel_lists_are_refused(value: str, message: str) -> None:
    """A Sentinel entry without a usable port, or listed twice, is a config error."""
    text = _with_redis("prism", "sentinels = {}".format(value), 'service = "s"')
    with pytest.raises(ConfigError, match=r"\[redis\] sentinels: .*" + message):
        parse_config("prism", text, "p", {})


@pytest.mark.parametrize("line,missing", [('sentinels = "h:26379"', "service"),
                                          ('service = "stretchfs"', "sentinels")])
def test_sentinel_mode_needs_both_keys(line: str, missing: str) -> None:
    """Sentinels without a service name (or a service without Sentinels) is refused."""
    with pytest.raises(ConfigError, match=r"\[redis\] {}: expected a value".format(missing)):
        parse_config("store", _with_redis("store", line), "s", {})


def test_replica_acks_default_follows_the_mode() -> None:
    """min_replica_acks defaults to 1 behind Sentinel and 0 on a single Redis; a set value
    wins; a negative one other than -1 is refused."""
    plain = parse_config("master", minimal_config("master"), "m", {})
    sentinel = parse_config("master", _with_redis("master", 'sentinels = "h:1"',
                                                  'service = "s"'), "m", {})
    chosen = parse_config("master", _with_redis("master", 'sentinels = "h:1"', 'service = "s"',
                                                "min_replica_acks = 2"), "m", {})
    assert (plain.redis.replica_acks, sentinel.redis.replica_acks,
            chosen.redis.replica_acks) == (0, 1, 2)
    with pytest.raises(ConfigError, match="min_replica_acks"):
        parse_config("master", _with_redis("master", "min_replica_acks = -2"), "m", {})
