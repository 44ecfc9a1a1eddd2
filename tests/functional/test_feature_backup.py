"""Backup while the node mines, restore into a fresh data directory: chain and details intact.

Plan:
1. A node (relay-only plug-in, difficulty 2) records signed diagnoses with off-chain
   details; a feeder keeps adding records, so the miner is busy, while
   ``run_node.py backup`` runs as a separate process (SQLite online backup API).
2. ``run_node.py restore`` refuses a non-empty target and a damaged backup, and
   restores into a new folder.
3. A node started on the restored folder has the backed-up best chain (height and tip
   hash of the manifest), and every record mined at backup time verifies as intact
   with details byte-identical to the original node's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from node.app import CHAIN, IDENTITY, MINER
from node.records import build_record_from_stored, derive_record_keys
from tests.conftest import REPO_ROOT
from tests.support.api import (
    RunningNode,
    make_node_dir,
    running_node,
    wait_until,
)

FEED_LIMIT = 400


def fake_result(index: int) -> dict:
    return {"plugin": "test", "modalities": {"ct": {"probability": (index % 97) / 100, "model": {"sha256": "ab" * 32}}},
            "fused_probability": (index % 97) / 100, "label": "normal", "risk_level": "Low",
            "risk_factors": {"age": None, "smoking": None, "family_history": None}, "recommendations": ["x"],
            "disclaimer": "Research use only — not for diagnostic use"}


async def add_record(node: RunningNode, index: int) -> bytes:
    app = node.app
    identity, chain = app[IDENTITY], app[CHAIN]
    new = build_record_from_stored(fake_result(index), {"ct": os.urandom(64)}, f"MRN-{index}", identity.private_key,
                       identity.member_id, derive_record_keys(identity.private_key), chain.clock_ms())
    await chain.add_pending_record(new.record, new.details_bytes)
    app[MINER].wake()
    return new.record.record_id


async def run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, str(REPO_ROOT / "run_node.py"), *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    return int(process.returncode or 0), output.decode()


async def test_backup_while_mining_restores_chain_and_details(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    backup_dir, restored_dir = tmp_path / "backup", tmp_path / "restored"
    async with running_node(data_dir, plugin="none") as node:
        chain = node.app[CHAIN]
        first = [await add_record(node, index) for index in range(5)]

        async def mined() -> bool:
            return all(location is not None for location in await chain.get_record_locations(first))

        await wait_until(mined, 60, "the first records to be mined")
        stop_feeding = asyncio.Event()

        async def mined_or_done(record_id: bytes) -> bool:
            return stop_feeding.is_set() or (await chain.get_record_locations([record_id]))[0] is not None

        async def feed() -> int:
            count = 0
            while not stop_feeding.is_set() and count < FEED_LIMIT:
                record_id = await add_record(node, 100 + count)
                count += 1
                # Paced by the chain, not a timer: the next record once this one is mined (or the backup is over).
                await wait_until(lambda: mined_or_done(record_id), 60, f"fed record {count} to be mined")  # noqa: B023
            return count

        feeder = asyncio.create_task(feed())
        height_before = chain.view.height
        code, output = await run_cli("backup", "--data-dir", str(data_dir), "--out", str(backup_dir))
        stop_feeding.set()
        fed = await feeder
        assert code == 0, output
        assert fed > 0 and chain.view.height > height_before, "the node was not mining during the backup"
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        height, tip = manifest["chain"]["height"], manifest["chain"]["tip"]
        assert height >= height_before
        originals = {}
        for h in range(1, height + 1):
            block_hash = chain.view.get_best_hash(h)
            assert block_hash is not None
            block = await chain.get_block(block_hash)
            assert block is not None
            for record in block.records:
                originals[record.record_id] = await chain.get_details(record.record_id)
        best = chain.view.get_best_hash(height)
        assert best is not None and best.hex() == tip
    assert len(originals) >= 5

    code, output = await run_cli("restore", "--backup", str(backup_dir), "--data-dir", str(data_dir))
    assert code == 2 and "not empty" in output
    damaged = tmp_path / "damaged"
    code, _ = await run_cli("backup", "--data-dir", str(data_dir), "--out", str(damaged))
    assert code == 0
    damaged_file = damaged / "node.json"
    damaged_file.write_bytes(damaged_file.read_bytes() + b" ")
    code, output = await run_cli("restore", "--backup", str(damaged), "--data-dir", str(tmp_path / "elsewhere"))
    assert code == 2 and "does not match the manifest" in output
    code, output = await run_cli("restore", "--backup", str(backup_dir), "--data-dir", str(restored_dir))
    assert code == 0, output
    assert oct((restored_dir / "node.key").stat().st_mode & 0o777) == "0o600"

    async with running_node(restored_dir, plugin="none") as node:
        chain = node.app[CHAIN]
        assert chain.view.height >= height
        restored_best = chain.view.get_best_hash(height)
        assert restored_best is not None and restored_best.hex() == tip
        started = time.monotonic()
        for record_id, details in originals.items():
            assert await chain.get_details(record_id) == details
            _, verdict = await node.get(f"/api/v1/records/{record_id.hex()}/verify")
            assert verdict["status"] == "intact", verdict
        assert time.monotonic() - started < 120
