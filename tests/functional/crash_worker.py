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

from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from node.app import CHAIN, IDENTITY, MINER, create_app  # noqa: E402
from node.config import NodeConfig  # noqa: E402
from tests.builders import MemberKeys, make_record  # noqa: E402


async def main(data_dir: Path, port: int) -> None:
    app = create_app(NodeConfig(data_dir=data_dir, port=port, plugin=None))
    runner = web.AppRunner(app)
    await runner.setup()
    # Port 0: the kernel picks a free port at bind time (a port chosen earlier and bound later can be taken
    # by another process on a busy machine in between; the worker's port is never used by the test).
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    identity = app[IDENTITY]
    keys = MemberKeys(identity.private_key, identity.member)
    print("READY", flush=True)
    while True:
        record = make_record(keys, created_ms=app[CHAIN].clock_ms())
        await app[CHAIN].add_pending_record(record, b"{}")
        print("ACK", record.record_id.hex(), flush=True)
        app[MINER].wake()
        await asyncio.sleep(0)  # yield to the miner and the HTTP server between records (not a timed wait)


if __name__ == "__main__":
    try:
        asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
    except BaseException:
        # Say why and exit at once: without runner.cleanup() the app's background tasks would keep
        # asyncio.run's final cancellation waiting, and the test would see a worker that never starts.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
