#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the static gate (ruff, mypy --strict) and the tests.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,test,hospital
# Debian's Chromium for the browser test (Playwright's own download is not used), and the Orthanc
# PACS and dcmtk (storescu, findscu) for the hospital-integration tests, and npm, with which the
# page tests install axe-core into .cache/axe.
packages=""
[ -x /usr/bin/chromium ] || packages="$packages chromium"
command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ] || packages="$packages orthanc"
command -v storescu >/dev/null || packages="$packages dcmtk"
command -v npm >/dev/null || packages="$packages npm"
if [ -n "$packages" ]; then
    sudo_if_needed=""
    [ "$(id -u)" = 0 ] || sudo_if_needed="sudo"
    $sudo_if_needed apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq $packages >/dev/null
fi
# Static gate first (versions pinned in pyproject.toml; paths and strictness there too).
.venv/bin/ruff check .  # every package, the tests and the benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
