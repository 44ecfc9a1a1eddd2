"""What TLS costs a peer link, measured in one process (less exposed to a shared machine than process clusters).

1. Link setup: node A dials node B and both see the session (TLS: TCP + TLS 1.3
   mutual handshake + WebSocket upgrade + hello/auth), repeated; plain
   WebSockets the same way (``tls: false``).
2. Bytes on the wire and time: B mines a chain of N blocks (one record each),
   then A, fresh, syncs it through a TCP proxy that counts every byte.

    .venv/bin/python bench/bench_tls.py [--links 20] [--blocks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.network import (
    TestNetwork, build_chain, disconnect_nodes, sync_blocks, wait_until,
)
from tests.functional.test_p2p_tls import RecordingProxy


async def measure_links(tls: bool, links: int) -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        network = TestNetwork.create(Path(directory), 2, tls=tls, log_level="WARNING")
        a, b = network.nodes
        await network.start()
        times = []
        try:
            for _ in range(links):
                started = time.perf_counter()
                await a.network.connect("127.0.0.1", b.port)
                await wait_until(lambda: b.identity.member_id in a.connected_peer_ids()
                                 and a.identity.member_id in b.connected_peer_ids(), 30, "link")
                times.append((time.perf_counter() - started) * 1000)
                await disconnect_nodes(a, b)
        finally:
            await network.stop()
    return times


async def measure_sync(tls: bool, blocks: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as directory:
        network = TestNetwork.create(Path(directory), 2, tls=tls, log_level="WARNING")
        a, b = network.nodes
        network.preload(1, build_chain(network, b, blocks))
        await network.start()
        proxy = RecordingProxy(b)
        await proxy.start()
        try:
            started = time.perf_counter()
            await a.network.connect("127.0.0.1", proxy.port)
            await sync_blocks(network.nodes, timeout=600)
            elapsed = time.perf_counter() - started
        finally:
            with contextlib.suppress(Exception):
                await proxy.stop()
            await network.stop()
    return elapsed, len(proxy.captured)


async def main(links: int, blocks: int) -> None:
    for tls in (False, True, False, True):
        times = await measure_links(tls, links)
        print(f"tls={int(tls)} link setup: median {statistics.median(times):.1f} ms, "
              f"p90 {sorted(times)[int(0.9 * len(times)) - 1]:.1f} ms ({links} links)", flush=True)
    for tls in (False, True, False, True):
        elapsed, size = await measure_sync(tls, blocks)
        print(f"tls={int(tls)} sync {blocks} blocks: {elapsed:.2f} s ({blocks / elapsed:.0f} blocks/s), "
              f"{size / 1e6:.3f} MB on the wire", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=2000)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(arguments.links, arguments.blocks))
