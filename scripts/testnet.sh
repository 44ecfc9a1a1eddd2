#!/usr/bin/env bash
# Set up the node's environment (no TensorFlow) and run a local multi-hospital testnet.
#   bash scripts/testnet.sh [--nodes N] [--base-port P] [--data-root DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run_node.py testnet --nodes 3 --base-port 8601 --data-root testnet-data "$@"
