"""Ledger core benchmark: validate and persist N blocks of 4 records into a fresh store.

Floor, measured in the same run on the same blocks: the unavoidable cost of
decoding, hashing (header, records, Merkle root) and checking every signature,
with no storage and no bookkeeping. Prints blocks/s for both and the ratio.

    .venv/bin/python bench/bench_ledger.py [--blocks 20000] [--batch 500]

Blocks are generated at difficulty 1 by default (generation speed only: a
block's validation checks one hash whatever the difficulty).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.builders import compute_block_meta
from consensus.crypto import BLOCK_DOMAIN, RECORD_DOMAIN, is_signature_valid
from consensus.merkle import compute_merkle_root
from consensus.types import Block
from node.store import ChainStore
from tests.support.builders import GENESIS_TIME_MS, make_chain, make_member, make_record, mine_block

RECORDS_PER_BLOCK = 4


def generate(count: int, difficulty: int) -> tuple[object, Block, list[bytes]]:
    members = [make_member(f"Hospital {i}", 100 + i) for i in range(4)]
    params, genesis = make_chain(members, difficulty=difficulty)
    meta = compute_block_meta(genesis, 0)
    encoded = []
    for height in range(count):
        member = members[height % len(members)]
        records = [make_record(member, created_ms=meta.timestamp_ms) for _ in range(RECORDS_PER_BLOCK)]
        block = mine_block(meta, member, records, difficulty=difficulty)
        encoded.append(block.encoded)
        meta = compute_block_meta(block, meta.chain_work)
    return params, genesis, encoded


def floor_pass(params: object, encoded: list[bytes]) -> float:
    members = params.members_by_id  # type: ignore[attr-defined]
    start = time.perf_counter()
    for raw in encoded:
        block = Block.decode(raw)
        key = members[block.header.miner_id].public_key
        ok = is_signature_valid(key, block.signature, BLOCK_DOMAIN, block.block_hash)
        ok &= compute_merkle_root([r.record_hash for r in block.records]) == block.header.merkle_root
        for record in block.records:
            ok &= is_signature_valid(members[record.member_id].public_key, record.signature, RECORD_DOMAIN,
                                     record.signing_bytes)
        if not ok:
            raise SystemExit("generated block failed the floor checks")
    return time.perf_counter() - start


def store_pass(params: object, genesis: Block, encoded: list[bytes], batch: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        store = ChainStore(Path(directory) / "chain.sqlite3", params, genesis)  # type: ignore[arg-type]
        now = GENESIS_TIME_MS + 10**12
        start = time.perf_counter()
        for offset in range(0, len(encoded), batch):
            store.add_blocks([Block.decode(raw) for raw in encoded[offset : offset + batch]], now)
        elapsed = time.perf_counter() - start
        assert store.height == len(encoded)
        store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="blocks per store transaction (as sync delivers them)")
    parser.add_argument("--difficulty", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    params, genesis, encoded = generate(args.blocks, args.difficulty)
    print(f"generated {args.blocks} blocks x {RECORDS_PER_BLOCK} records in {time.perf_counter() - started:.1f} s")
    floor = floor_pass(params, encoded)
    stored = store_pass(params, genesis, encoded, args.batch)
    floor_rate, store_rate = args.blocks / floor, args.blocks / stored
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"floor (decode + hash + verify signatures): {floor_rate:,.0f} blocks/s ({floor:.2f} s)")
    print(f"store (validate + persist, batch {args.batch}): {store_rate:,.0f} blocks/s ({stored:.2f} s)")
    print(f"ratio store/floor: {store_rate / floor_rate:.2f} (goal >= 0.50)")


if __name__ == "__main__":
    main()
