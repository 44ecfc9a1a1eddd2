"""Initial sync over the peer network vs local validate-and-persist, in one run.

1. Generate a chain of N blocks x 4 records (difficulty 1, as bench_ledger.py)
   mined by the serving nodes' own keys.
2. Local rate: decode, validate and persist the chain into a fresh store in
   batches of 500 (the store pass of bench/bench_ledger.py). That store
   becomes the first serving node's; a copy becomes the second's. The local
   pass runs again after step 3 and the mean of both is the reference (the
   benchmark machine may be shared).
3. Network rate: start the two servers and a fresh node (all separate
   processes on loopback); time from the fresh node being ready to its best
   tip reaching height N.

    .venv/bin/python bench/bench_sync.py [--blocks 20000] [--servers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.p2p_cluster import start_worker, stop_workers
from consensus.builders import compute_block_meta
from consensus.types import Block
from node.genesis import Genesis, build_genesis, write_genesis
from node.identity import NodeIdentity, init_identity
from node.store import ChainStore
from tests.support.builders import MemberKeys, make_record, mine_block

RECORDS_PER_BLOCK = 4
BATCH = 500
GENESIS_AGE_MS = 30 * 24 * 3600 * 1000


def generate(genesis: Genesis, miners: list[NodeIdentity], count: int) -> list[bytes]:
    keys = [MemberKeys(m.private_key, m.member) for m in miners]
    meta = compute_block_meta(genesis.block, 0)
    encoded = []
    for height in range(count):
        member = keys[height % len(keys)]
        records = [make_record(member, created_ms=meta.timestamp_ms, record_id=os.urandom(16)) for _ in range(RECORDS_PER_BLOCK)]
        block = mine_block(meta, member, records, difficulty=genesis.params.difficulty)
        encoded.append(block.encoded)
        meta = compute_block_meta(block, meta.chain_work)
    return encoded


def local_pass(genesis: Genesis, encoded: list[bytes], path: Path, own_id: bytes) -> float:
    store = ChainStore(path, genesis.params, genesis.block, own_id)
    now = int(time.time() * 1000)
    start = time.perf_counter()
    for offset in range(0, len(encoded), BATCH):
        store.add_blocks([Block.decode(raw) for raw in encoded[offset:offset + BATCH]], now)
    elapsed = time.perf_counter() - start
    if store.height != len(encoded):
        raise SystemExit("local pass did not reach the tip")
    store.close()
    return elapsed


async def network_pass(root: Path, genesis_path: Path, servers: int, count: int) -> float:
    workers = [await start_worker(i, root / f"node{i}", genesis_path, []) for i in range(servers)]
    try:
        started = time.time_ns()
        syncer = await start_worker(servers, root / f"node{servers}", genesis_path, [w.port for w in workers])
        workers.append(syncer)
        async with asyncio.timeout(1800):
            while not any(height >= count for height, _, _ in syncer.best.values()):
                syncer.changed.clear()
                await syncer.changed.wait()
        finished = max(t for height, t, _ in syncer.best.values() if height >= count)
    finally:
        await stop_workers(workers)
    return (finished - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=20_000)
    parser.add_argument("--servers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        identities = [init_identity(root / f"node{i}", f"Hospital {i}") for i in range(args.servers + 1)]
        genesis = build_genesis("bench-sync", [i.member for i in identities], int(time.time() * 1000) - GENESIS_AGE_MS, 1)
        genesis_path = root / "genesis.json"
        write_genesis(genesis_path, genesis)
        started = time.perf_counter()
        encoded = generate(genesis, identities[: args.servers], args.blocks)
        print(f"generated {args.blocks} blocks x {RECORDS_PER_BLOCK} records in {time.perf_counter() - started:.1f} s")
        first_store = root / "node0" / "chain.sqlite3"
        local = local_pass(genesis, encoded, first_store, identities[0].member_id)
        for index in range(1, args.servers):
            shutil.copyfile(first_store, root / f"node{index}" / "chain.sqlite3")
        synced = asyncio.run(network_pass(root, genesis_path, args.servers, args.blocks))
        # The machine is shared: measure the local rate again after the sync and compare with the mean.
        local_after = local_pass(genesis, encoded, root / "local-after.sqlite3", identities[0].member_id)
    local_rate, sync_rate = 2 * args.blocks / (local + local_after), args.blocks / synced
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"local validate + persist (batch {BATCH}): {local_rate:,.0f} blocks/s "
          f"(mean of {local:.1f} s before and {local_after:.1f} s after the sync)")
    print(f"sync from {args.servers} peers over loopback: {sync_rate:,.0f} blocks/s ({synced:.1f} s)")
    print(f"ratio sync/local: {sync_rate / local_rate:.2f} (goal >= 0.70)")


if __name__ == "__main__":
    main()
