#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the static gate (ruff, mypy --strict) and the tests.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,test
if [ ! -x /usr/bin/chromium ]; then
    # Debian's Chromium for the browser test (Playwright's own download is not used).
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
# Static gate first (versions pinned in pyproject.toml; paths and strictness there too).
.venv/bin/ruff check consensus network node harness run_node.py
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
