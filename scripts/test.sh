#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,test
if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null; then
    # Debian's Chromium for the browser tests (Playwright's own download is not used), and npm, with which
    # the page tests install axe-core into .cache/axe.
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium npm >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium npm >/dev/null
    fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
