"""The pure helpers of the chaos scenarios."""

from __future__ import annotations

import json
import tomllib

from stretchfs.chaos.scenarios import config_with, corrupt_found


def test_config_with_sets_keys_in_an_existing_or_a_new_section() -> None:
    """Keys go right under the section's header when it exists (TOML allows one header
    per table), else into a new section at the end; the rest stays as it was."""
    text = '[node]\nname = "store3"\n\n[scrub]\nperiod = 60.0\n\n[log]\nformat = "json"\n'
    changed = tomllib.loads(config_with(text, "scrub", {"rate": '"64 MiB"'}))
    assert changed == {"node": {"name": "store3"}, "scrub": {"rate": "64 MiB", "period": 60.0},
                       "log": {"format": "json"}}
    added = tomllib.loads(config_with('[node]\nname = "store3"\n', "scrub", {"period": "1.0"}))
    assert added == {"node": {"name": "store3"}, "scrub": {"period": 1.0}}


def test_corrupt_found_reads_the_scrubs_log_lines(tmp_path) -> None:
    """The hashes named by `scrub_corrupt` events of a store's JSON log; other lines and
    events are ignored, and a missing log names none."""
    log = tmp_path / "store.log"
    log.write_text("\n".join([
        json.dumps({"event": "scrub_corrupt", "name": "a" * 40 + ".bin"}),
        json.dumps({"event": "scrub_pass", "name": "b" * 40 + ".bin"}),
        "not json",
        json.dumps({"event": "scrub_corrupt", "name": "c" * 40 + ".mp4"}),
    ]) + "\n")
    assert corrupt_found(str(log)) == {"a" * 40, "c" * 40}
    assert corrupt_found(str(tmp_path / "missing.log")) == set()

