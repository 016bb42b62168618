"""Exit codes of the StretchFS daemons and command-line tools (sysexits.h values).

The daemons (`twistd stretchfs-<role>`) exit with:

* EX_CONFIG (78): the config is invalid or missing; one line on stderr names
  the file and the key.  The systemd units do not restart on it
  (`RestartPreventExitStatus=78`): restarting cannot fix a config.
* EX_LISTEN (75): the HTTP listener could not be bound (the port is taken,
  e.g. by an old process still stopping, or not permitted); the
  `listen_failed` log event says why.  systemd restarts the unit
  (`Restart=on-failure`), so a port that frees up is taken on a later try.
"""

from __future__ import annotations

EX_USAGE = 2
"""A command line the tools cannot act on (argparse's own code)."""
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_CONFIG = 78

EX_LISTEN = EX_TEMPFAIL
"""A daemon could not bind its HTTP listener."""
