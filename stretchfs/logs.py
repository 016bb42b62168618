"""Log observer factories for `twistd --logger=stretchfs.logs.<name>`.

`json_stdout` writes one JSON object per line (for journald and for the
end-to-end tests, which wait for events by their fields); `text_stdout`
writes plain lines.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    formatEvent,
    textFileLogObserver,
)

_SKIP_FIELDS = {"log_logger", "log_source", "log_io", "log_trace", "log_failure",
                "log_legacy", "log_flattened", "log_text", "message", "format",
                "isError", "system", "why", "log_time", "log_namespace", "log_level"}


def _field_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_field_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _field_value(v) for k, v in value.items()}
    return repr(value)


def event_as_json(event: dict[str, Any]) -> str:
    """Render one log event as a single JSON line with its fields."""
    record: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "text": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key in _SKIP_FIELDS or key in record or key.startswith("_"):
            continue
        record[key] = _field_value(value)
    return json.dumps(record, default=repr) + "\n"


def json_observer(out: IO[str]) -> ILogObserver:
    """A FileLogObserver writing one JSON object per event to `out`."""
    return FileLogObserver(out, event_as_json)


def json_stdout() -> ILogObserver:
    """twistd `--logger` factory: JSON lines on stdout."""
    return json_observer(sys.stdout)


def text_stdout() -> ILogObserver:
    """twistd `--logger` factory: plain text lines on stdout."""
    return textFileLogObserver(sys.stdout, timeFormat="%Y-%m-%dT%H:%M:%S%z")


__all__ = ["event_as_json", "json_observer", "json_stdout", "text_stdout"]
