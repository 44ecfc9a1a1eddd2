"""Block propagation over the peer network: N node processes on loopback, sparse topology.

For each block: a record is added at a random node (through its own objects)
and the member in turn mines it (signer limit and in-turn order,
docs/CONSENSUS.md); we time from the moment the miner's chain accepted it to the
moment the last node has it as its best tip. Prints p50/p99 and frames sent
per block (all message types, all nodes).

    .venv/bin/python bench/bench_propagation.py [--nodes 4 8 16] [--blocks 60] [--difficulty 3]

Topology: node i dials i+1 and i+3 (mod N): every node has 2-4 peers, not a
full mesh (diameter 2 at N=8, 4 at N=16).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.p2p_cluster import Worker, start_worker, stop_workers
from node.genesis import build_genesis, write_genesis
from node.identity import init_identity

BLOCK_TIMEOUT_S = 30.0


def compute_edges(count: int) -> set[tuple[int, int]]:
    edges = set()
    for i in range(count):
        for step in (1, 3):
            j = (i + step) % count
            if j != i and (j, i) not in edges:
                edges.add((i, j))
    return edges


async def start_cluster(root: Path, count: int, difficulty: int) -> list[Worker]:
    identities = [init_identity(root / f"node{i}", f"Hospital {i}") for i in range(count)]
    genesis = root / "genesis.json"
    write_genesis(genesis, build_genesis("bench", [i.member for i in identities], int(time.time() * 1000) - 60_000, difficulty))
    edges = compute_edges(count)
    workers = await asyncio.gather(*(start_worker(i, root / f"node{i}", genesis, []) for i in range(count)))
    for a, b in edges:
        await workers[a].command(f"connect 127.0.0.1:{workers[b].port}")
    degree = {i: sum(1 for edge in edges if i in edge) for i in range(count)}
    async with asyncio.timeout(60):
        while True:
            counts = [int((await w.command("peers", "PEERS")).split()[1]) for w in workers]  # type: ignore[union-attr]
            if all(counts[i] == degree[i] for i in range(count)):
                return list(workers)
            await asyncio.sleep(0.1)


async def measure_block(workers: list[Worker], origin: Worker) -> float:
    """Time from the block's miner accepting it to the last node having it as best tip.

    The record is added at ``origin``; under the signer limit and the in-turn order
    (docs/CONSENSUS.md) the member in turn for the height may carry and mine it, so the
    block is whichever new block any node mined, not necessarily the origin's.
    """
    known = {h for w in workers for h in w.best}
    await origin.command("mine")
    async with asyncio.timeout(BLOCK_TIMEOUT_S):
        while True:
            mined = [(h, w) for w in workers for h, (_, _, source) in w.best.items()
                     if h not in known and source == "miner"]
            if mined and all(mined[0][0] in w.best for w in workers):
                block_hash, miner = mined[0]
                break
            await asyncio.sleep(0.005)
    start = miner.best[block_hash][1]
    return (max(w.best[block_hash][1] for w in workers) - start) / 1e6


async def frames_sent(workers: list[Worker]) -> int:
    replies = [await w.command("stats", "STATS") for w in workers]
    return sum(int(r.split()[1]) for r in replies if r)


async def bench(count: int, blocks: int, difficulty: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        workers = await start_cluster(Path(directory), count, difficulty)
        try:
            await measure_block(workers, workers[0])  # warm-up
            frames_before = await frames_sent(workers)
            latencies = [await measure_block(workers, random.choice(workers)) for _ in range(blocks)]
            frames = await frames_sent(workers) - frames_before
        finally:
            await stop_workers(workers)
    latencies.sort()
    return {
        "nodes": count, "blocks": blocks,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))],
        "max_ms": latencies[-1],
        "frames_per_block": frames / blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--difficulty", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for count in args.nodes:
        result = asyncio.run(bench(count, args.blocks, args.difficulty))
        print(f"N={count:2d}: p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
              f"max {result['max_ms']:6.1f} ms  frames/block {result['frames_per_block']:5.1f}  "
              f"({args.blocks} blocks, difficulty {args.difficulty})", flush=True)


if __name__ == "__main__":
    main()
