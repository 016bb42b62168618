"""JSON log lines carry the event's fields."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger

from stretchfs.logs import json_observer, json_stdout
from tests.helpers import minimal_config, write_config


def test_json_lines_keep_fields_and_render_text() -> None:
    """Each event becomes one JSON line with its text, level and named fields."""
    out = io.StringIO()
    observer = json_observer(out)
    log = Logger(namespace="stretchfs.test", observer=observer)
    log.info("{role} listening on {host}:{port}", role="store", host="127.0.0.1", port=8162,
             event="listening")
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["text"] == "store listening on 127.0.0.1:8162"
    assert record["level"] == "info"
    assert record["namespace"] == "stretchfs.test"
    assert (record["event"], record["port"]) == ("listening", 8162)


def test_failures_carry_their_traceback() -> None:
    """A logged failure includes its traceback in the JSON record."""
    out = io.StringIO()
    log = Logger(namespace="stretchfs.test", observer=json_observer(out))
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("while dividing")
    record = json.loads(out.getvalue())
    assert record["level"] == "critical"
    assert "ZeroDivisionError" in record["traceback"]


def test_json_format_in_the_config_selects_the_json_logger(tmp_path) -> None:
    """twistd options with `[log] format = "json"` and no --logger end with the JSON observer."""
    from twisted.application.app import ServerOptions

    path = write_config(str(tmp_path), "master",
                        minimal_config("master", extra='[log]\nformat = "json"\n'))
    options = ServerOptions()
    options.parseOptions(["stretchfs-master", "--config", path])
    assert options["logger"] is json_stdout
