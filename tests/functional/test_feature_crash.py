"""Crash safety: kill -9 a node at random moments; nothing acknowledged is lost.

Plan:
1. Create a node's keys and a genesis (default difficulty 3).
2. 20 times: start the real node process, which stores records as fast as it
   can and prints ACK after each commit, mining them into blocks meanwhile;
   SIGKILL it after a random 0.3-1.5 s.
3. After each kill, open the store in this process: it opens, the whole best
   chain re-validates, and every acknowledged record is on the best chain or
   pending (never both, never neither).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.genesis import build_genesis, load_genesis, write_genesis
from node.identity import init_identity
from node.store import ChainStore
from node.verify import verify_best_chain

KILLS = 20
WORKER = Path(__file__).resolve().parents[1] / "support" / "crash_worker.py"


def run_until_killed(data_dir: Path, run_seconds: float) -> list[bytes]:
    """Start the worker, collect ACKs, SIGKILL it after run_seconds of work."""
    process = subprocess.Popen([sys.executable, str(WORKER), str(data_dir), "0"],
                               stdout=subprocess.PIPE, text=True)
    acked: list[bytes] = []
    assert process.stdout is not None
    deadline = None
    start = time.monotonic()
    try:
        for line in process.stdout:
            if line.startswith("READY"):
                deadline = time.monotonic() + run_seconds
            elif line.startswith("ACK "):
                acked.append(bytes.fromhex(line.split()[1]))
            if deadline is not None and time.monotonic() >= deadline:
                break
            assert time.monotonic() - start < 60, "worker did not start"
        assert deadline is not None, f"worker exited with {process.poll()} before it was ready"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # also when the test fails: never leave a worker behind
        process.wait()
    # Lines already written before the kill are acknowledgements too.
    for line in process.stdout:
        if line.startswith("ACK "):
            acked.append(bytes.fromhex(line.split()[1]))
    return acked


def test_kill_minus_nine_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    identity = init_identity(tmp_path, "Crash Test Hospital")
    write_genesis(tmp_path / "genesis.json", build_genesis("crash", [identity.member], int(time.time() * 1000)))
    genesis = load_genesis(tmp_path / "genesis.json")
    rng = random.Random(20261126)
    acknowledged: set[bytes] = set()
    for _ in range(KILLS):
        acknowledged.update(run_until_killed(tmp_path, rng.uniform(0.3, 1.5)))
        store = ChainStore(tmp_path / "chain.sqlite3", genesis.params, genesis.block, identity.member_id)
        try:
            report = verify_best_chain(store, int(time.time() * 1000))
            assert report.valid, report
            on_chain = {r.record_id for h in store.view.best[1:] for r in store.get_block(h).records}
            pending = {r.record_id for r in store.pending.get_records(10**6)}
        finally:
            store.close()
        assert not on_chain & pending
        missing = acknowledged - on_chain - pending
        assert not missing, f"{len(missing)} acknowledged records lost"
    assert len(acknowledged) > KILLS  # the node really was working when killed
    assert on_chain, "no block was ever mined"
