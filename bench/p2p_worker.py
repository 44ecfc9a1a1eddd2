"""One benchmark node in its own process, driven over stdin/stdout.

    python bench/p2p_worker.py --data-dir D --genesis G [--port P] [--peer H:P ...]

Started through the node launcher (port 0 by default: the kernel picks it).
Prints ``READY <port>`` once serving, then ``BEST <hash> <height> <time_ns> <source>``
each time the best tip changes. Commands on stdin: ``mine`` (add a signed
record and wake the miner), ``connect <host:port>`` (dial a peer), ``peers``
(prints ``PEERS <n>``), ``stats`` (prints ``STATS <frames sent>``), ``quit``.
Peer links use TLS unless the environment sets ``P2P_WORKER_TLS=0`` (to
measure what TLS costs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from node.app import CHAIN, IDENTITY, MINER
from node.config import NodeConfig
from node.keys import NETWORK
from node.launcher import launch_node
from node.results import AddResult
from tests.support.builders import MemberKeys, make_record


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def handle_commands(app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "mine":
            identity = app[IDENTITY]
            record = make_record(MemberKeys(identity.private_key, identity.member), created_ms=int(time.time() * 1000),
                                 record_id=os.urandom(16))
            await app[CHAIN].add_pending_record(record)
            app[MINER].wake()
        elif line == "peers":
            emit(f"PEERS {len(app[NETWORK].peers)}")
        elif line == "stats":
            emit(f"STATS {app[NETWORK].frames_sent}")
        elif line.startswith("connect "):
            host, _, port = line.split()[1].rpartition(":")
            await app[NETWORK].connect(host, int(port))
        elif line == "quit":
            return


async def run(config: NodeConfig) -> None:
    node = await launch_node(config)
    app = node.app
    chain = app[CHAIN]

    async def on_blocks(results: Sequence[AddResult], source: Any) -> None:
        if any(r.on_best_chain for r in results):
            tip = chain.view.tip
            emit(f"BEST {tip.block_hash.hex()} {tip.height} {time.time_ns()} {source if isinstance(source, str) else 'peer'}")

    chain.listeners.append(on_blocks)
    emit(f"READY {node.config.port}")
    try:
        await handle_commands(app)
    finally:
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--genesis", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--log-level", default=os.environ.get("P2P_WORKER_LOG", "WARNING"))
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {Path(args.data_dir).name} %(name)s %(message)s")
    config = NodeConfig(data_dir=Path(args.data_dir), port=args.port, genesis_path=Path(args.genesis),
                        peers=tuple(args.peer), plugin="none", outbound_peers=0, log_level=args.log_level,
                        tls=os.environ.get("P2P_WORKER_TLS", "1") != "0")
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
