"""Command-line options shared by the three twistd plugins.

A bad config is not a usage mistake: it prints one line on stderr
(``stretchfs-store: etc/store.toml: [ping] interval: expected ...``) and
exits with EX_CONFIG (78, see `stretchfs.exitcodes`), without twistd's usage
text or a traceback.  `[log] format = "json"` stands in for
`--logger=stretchfs.logs.json_stdout` when no `--logger` is given.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from stretchfs.config import RoleConfig, load_config
from stretchfs.errors import ConfigError
from stretchfs.exitcodes import EX_CONFIG

CONFIG_ENV = "STRETCHFS_CONFIG"
JSON_LOGGER = "stretchfs.logs.json_stdout"


class RoleOptions(usage.Options):
    """`-c/--config FILE` (or $STRETCHFS_CONFIG); loads and validates it."""

    role = ""
    optParameters = [["config", "c", None, "TOML config file (default: $STRETCHFS_CONFIG)"]]

    def postOptions(self) -> None:
        """Load the config now, so mistakes stop the daemon before it starts."""
        path = self["config"] or os.environ.get(CONFIG_ENV)
        if not path:
            raise usage.UsageError("--config FILE is required")
        try:
            self.settings: RoleConfig = load_config(self.role, path)
        except ConfigError as exc:
            sys.stderr.write("stretchfs-{}: {}\n".format(self.role, exc))
            sys.stderr.flush()
            raise SystemExit(EX_CONFIG) from None
        parent: Any = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger") and self.settings.log.format == "json":
            # twistd's own postOptions runs after ours and imports this dotted name.
            parent["logger"] = JSON_LOGGER
