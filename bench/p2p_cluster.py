"""Driver side of the peer-network benchmarks: start p2p_worker processes and read their events."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORKER = Path(__file__).resolve().parent / "p2p_worker.py"
START_TIMEOUT_S = 60.0


@dataclass
class Worker:
    index: int
    port: int
    process: asyncio.subprocess.Process
    best: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # hash -> (height, time_ns, source)
    replies: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def command(self, text: str, reply_prefix: str | None = None) -> str | None:
        assert self.process.stdin is not None
        self.process.stdin.write((text + "\n").encode())
        await self.process.stdin.drain()
        if reply_prefix is None:
            return None
        async with asyncio.timeout(30):
            while True:
                line = await self.replies.get()
                if line.startswith(reply_prefix):
                    return line

    async def read_events(self) -> None:
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode().strip():
            if line.startswith("BEST "):
                _, block_hash, height, time_ns, source = line.split()
                self.best[block_hash] = (int(height), int(time_ns), source)
                self.changed.set()
            else:
                await self.replies.put(line)


async def start_worker(index: int, data_dir: Path, genesis: Path, peers: list[int]) -> Worker:
    """Start a worker on a port of its own choosing (port 0 through the node launcher) and read it back."""
    arguments = [str(WORKER), "--data-dir", str(data_dir), "--genesis", str(genesis)]
    for peer_port in peers:
        arguments += ["--peer", f"127.0.0.1:{peer_port}"]
    process = await asyncio.create_subprocess_exec(sys.executable, *arguments, stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE)
    worker = Worker(index, 0, process)
    asyncio.get_running_loop().create_task(worker.read_events())
    async with asyncio.timeout(START_TIMEOUT_S):
        while not (line := await worker.replies.get()).startswith("READY "):
            pass
    worker.port = int(line.split()[1])
    return worker


async def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.returncode is None:
            await worker.command("quit")
    for worker in workers:
        try:
            async with asyncio.timeout(15):
                await worker.process.wait()
        except TimeoutError:
            worker.process.kill()
