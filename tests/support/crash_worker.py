"""A real node (store, miner, HTTP app) fed records as fast as it acknowledges them.

Prints ``ACK <record id hex>`` after each record's commit returned. The crash
test kills this process with SIGKILL at random moments.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from node.app import CHAIN, IDENTITY, MINER  # noqa: E402
from node.config import NodeConfig  # noqa: E402
from node.launcher import launch_node  # noqa: E402
from tests.support.builders import MemberKeys, make_record  # noqa: E402


async def main(data_dir: Path, port: int) -> None:
    try:
        await run(data_dir)
    except BaseException:
        # Say why and exit at once, inside the loop: asyncio.run's final cancellation would otherwise wait
        # on the node's background tasks, and the test would wait on a worker that neither acks nor exits.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


async def run(data_dir: Path) -> None:
    # Port 0: the launcher binds a port the kernel picks (a port chosen earlier could be taken on a busy
    # machine before the bind; the test never uses the worker's port).
    node = await launch_node(NodeConfig(data_dir=data_dir, host="127.0.0.1", port=0, plugin=None))
    app = node.app
    identity = app[IDENTITY]
    keys = MemberKeys(identity.private_key, identity.member)
    print("READY", flush=True)
    while True:
        # Random ids: the builder's default ids come from a per-process counter, so a restarted worker would
        # repeat the ids of records it queued before the kill (refused as duplicate-record).
        record = make_record(keys, created_ms=app[CHAIN].clock_ms(), record_id=os.urandom(16))
        await app[CHAIN].add_pending_record(record, b"{}")
        print("ACK", record.record_id.hex(), flush=True)
        app[MINER].wake()
        await asyncio.sleep(0)  # yield to the miner and the HTTP server between records (not a timed wait)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
