#!/bin/sh
# Type-check stretchfs/ with mypy (settings in mypy.ini) after printing how many
# `Any` the role code's annotations hold, now and before issue 13.
# PYTHON: the interpreter that has the `test` extras (default: python3 on PATH).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" scripts/anycount.py
exec "$PYTHON" -m mypy
