"""Upload -> mined when only one hospital uploads: relayed records mined by the others.

Time from a record's upload (``ChainService.add_pending_record`` called, the
miner woken, as the upload routes do) to the record being on the uploading
node's best chain, one upload at a time, in three set-ups measured round-robin
in the same run (so they share the machine's load):

- ``one node``: a single-member chain; the node mines its own record (baseline);
- ``3 nodes, uploader mines``: full mesh, only node 0 uploads, all three mine
  (node 0 mines its record at once when the signer limit lets it; after its
  own block the member in turn carries the relayed copy: ``node/carry.py``);
- ``3 nodes, uploader cannot mine``: the same with node 0's miner off
  (``mine: false``, told to the others in its hello, so they never wait for
  it): every record must be relayed and mined by node 1 or 2.

Prints p50 / p95 / max per set-up and the ratio of each 3-node p95 to the
one-node p95. Nodes run in this process (one event loop, proof-of-work on
worker threads), over real TLS links on loopback, SQLite in a temp dir.

    .venv/bin/python bench/bench_relay.py [--uploads 60] [--difficulty 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.results import AddResult
from tests.support.builders import make_record
from tests.support.network import TestNetwork, TestNode, connect_all

UPLOAD_TIMEOUT_S = 60.0


async def upload_and_wait(node: TestNode) -> float:
    """Seconds from the upload to the record on ``node``'s best chain."""
    record = make_record(node.member, created_ms=int(time.time() * 1000), record_id=os.urandom(16))
    mined = asyncio.Event()

    async def on_blocks(results: Sequence[AddResult], source: Any) -> None:
        if any(r.tip_changed for r in results) and await node.chain.is_record_on_best_chain(record.record_id):
            mined.set()

    node.chain.listeners.append(on_blocks)
    try:
        start = time.perf_counter()
        await node.chain.add_pending_record(record)
        node.miner.wake()
        async with asyncio.timeout(UPLOAD_TIMEOUT_S):
            await mined.wait()
        return time.perf_counter() - start
    finally:
        node.chain.listeners.remove(on_blocks)


async def start(root: Path, count: int, difficulty: int, uploader_mines: bool) -> TestNetwork:
    network = TestNetwork.create(root, count, difficulty=difficulty, log_level="WARNING")
    if not uploader_mines:
        network.configure(0, mine=False)
    await network.start()
    await connect_all(network.nodes)
    return network


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(uploads: int, difficulty: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        root = Path(tmp)
        setups = {
            "one node": await start(root / "one", 1, difficulty, True),
            "3 nodes, uploader mines": await start(root / "mesh", 3, difficulty, True),
            "3 nodes, uploader cannot mine": await start(root / "relay", 3, difficulty, False),
        }
        samples: dict[str, list[float]] = {name: [] for name in setups}
        try:
            for _ in range(uploads):
                for name, network in setups.items():
                    samples[name].append(await upload_and_wait(network.nodes[0]))
            carried = await count_carried(setups["3 nodes, uploader cannot mine"])
            stale = {name: count_stale(network) for name, network in setups.items()}
        finally:
            for network in setups.values():
                await network.stop()
    report(samples, uploads, difficulty, carried, stale)


def count_stale(network: TestNetwork) -> int:
    """Blocks node 0 knows that are not on its best chain: races between miners carrying the same record."""
    view = network.nodes[0].view
    return len(view.metas) - len(view.best)


async def count_carried(network: TestNetwork) -> tuple[int, int]:
    """(records of node 0 on its best chain, how many of them in blocks node 0 did not mine)."""
    uploader = network.nodes[0]
    blocks = await uploader.chain.get_blocks(list(uploader.view.best[1:]))
    own = [(block.header.miner_id, r) for block in blocks for r in block.records if r.member_id == uploader.identity.member_id]
    return len(own), sum(1 for miner, _ in own if miner != uploader.identity.member_id)


def report(samples: dict[str, list[float]], uploads: int, difficulty: int, carried: tuple[int, int],
           stale: dict[str, int]) -> None:
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{uploads} uploads per set-up, one at a time, round-robin; difficulty {difficulty}")
    base = percentile(samples["one node"], 0.95)
    for name, values in samples.items():
        p95 = percentile(values, 0.95)
        print(f"{name:32s} p50 {1000 * statistics.median(values):7.1f} ms  p95 {1000 * p95:7.1f} ms  "
              f"max {1000 * max(values):7.1f} ms  p95 ratio to one node {p95 / base:5.2f}  stale blocks {stale[name]}")
    print(f"uploader cannot mine: {carried[1]} of {carried[0]} of its records mined by another member")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--difficulty", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args.uploads, args.difficulty))


if __name__ == "__main__":
    main()
