"""`run_node.py testnet`: one command, N node processes, clean stop, restart with the chain intact.

Plan:
1. `testnet --nodes 2 --base-port 0` on a fresh data root (every node binds a
   port the kernel chooses) prints both addresses and API tokens; the nodes
   connect to each other (/api/v1/peers).
2. SIGTERM stops every node; the command exits 0.
3. 20 blocks are written into node 0's store while the testnet is down.
4. `testnet` again on the same root: same tokens, new ports read back, and
   node 1 syncs to height 20 from node 0.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from node.genesis import load_genesis
from node.identity import load_identity
from node.store import ChainStore
from tests.support.builders import MemberKeys, build_branch
from harness.util import OWN_NODE_TLS, wait_until

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def start_testnet(data_root: Path) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_node.py"), "testnet", "--nodes", "2", "--base-port", "0",
         "--data-root", str(data_root), "--difficulty", "1", "--no-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:  # ends when the process exits; bounded by the testnet's own start timeout
        lines.append(line.strip())
        if line.startswith("testnet of 2 nodes running"):
            return process, lines
    raise AssertionError(f"testnet did not start: {lines}")


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", timeout=5, context=OWN_NODE_TLS) as response:
        return json.loads(response.read())


def stop_testnet(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def printed_ports(lines: list[str]) -> list[int]:
    return [int(port) for line in lines for port in re.findall(r"https://127\.0\.0\.1:(\d+)/", line)]


def test_testnet_starts_stops_and_restarts_with_its_chain(tmp_path: Path) -> None:
    process, lines = start_testnet(tmp_path)
    try:
        tokens = [line.split("api token ")[1] for line in lines if "api token" in line]
        ports = printed_ports(lines)
        assert len(tokens) == 2 and len(ports) == 2 and 0 not in ports
        wait_until(lambda: all(get_json(port, "/api/v1/peers")["count"] == 1 for port in ports), 30,
                 "the two testnet nodes to connect")
    finally:
        stop_testnet(process)

    genesis = load_genesis(tmp_path / "genesis.json")
    identity = load_identity(tmp_path / "node0")
    other = load_identity(tmp_path / "node1")  # two members: they alternate (signer limit)
    blocks = build_branch(genesis.block, 0, [MemberKeys(i.private_key, i.member) for i in (identity, other)], 20,
                          difficulty=1)
    store = ChainStore(tmp_path / "node0" / "chain.sqlite3", genesis.params, genesis.block, identity.member_id)
    store.add_blocks(blocks, int(time.time() * 1000))
    store.close()

    process, lines = start_testnet(tmp_path)
    try:
        assert [line.split("api token ")[1] for line in lines if "api token" in line] == tokens
        ports = printed_ports(lines)
        assert len(ports) == 2
        wait_until(lambda: all(get_json(port, "/api/v1/status")["height"] == 20 for port in ports), 30,
                 "node 1 to sync node 0's 20 blocks")
    finally:
        stop_testnet(process)
