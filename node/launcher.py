"""The one way to start a node: bind the listening socket first, then build and serve the app on it.

Binding before anything else means port 0 works everywhere (the kernel picks a
free port and the node reads it back), so tests, the API harness, the
benchmarks and ``run_node.py`` never choose a port, release it, and race
another process to bind it later. The port read back goes into the config
before the app is built, so the network advertises the real one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from node.app import create_app
from node.config import NodeConfig
from node.p2p import get_server_ssl_context

SHUTDOWN_TIMEOUT_S = 2.0
PORT_FILE = "port"  # written into the data directory once serving: how other processes find a port-0 node


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 asks the kernel for a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class LaunchedNode:
    """A node serving on its socket; ``config.port`` is the port actually bound."""

    config: NodeConfig
    app: web.Application
    runner: web.AppRunner

    @property
    def url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{self.config.host}:{self.config.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def launch_node(config: NodeConfig, handle_signals: bool = False,
                      shutdown_timeout: float = SHUTDOWN_TIMEOUT_S) -> LaunchedNode:
    """Bind (port 0 allowed), build the app with the bound port, serve, and record the port in the data dir."""
    sock = bind_listener(config.host, config.port)
    config = replace(config, port=int(sock.getsockname()[1]))
    try:
        app = create_app(config)
        runner = web.AppRunner(app, handle_signals=handle_signals, shutdown_timeout=shutdown_timeout)
        await runner.setup()
    except BaseException:
        sock.close()
        raise
    try:
        await web.SockSite(runner, sock, ssl_context=get_server_ssl_context(app)).start()
    except BaseException:
        await runner.cleanup()
        raise
    await asyncio.to_thread(write_port_file, config.data_dir, config.port)
    return LaunchedNode(config, app, runner)


def write_port_file(data_dir: Path, port: int) -> None:
    temporary = data_dir / f"{PORT_FILE}.tmp"
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # the data dir's files are 0600
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{port}\n")
    temporary.replace(data_dir / PORT_FILE)


def read_port_file(data_dir: Path) -> int | None:
    """The port a node in ``data_dir`` serves on, once it has written it (None before)."""
    try:
        return int((data_dir / PORT_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


async def serve_until_signalled(config: NodeConfig) -> None:
    """Run one node until SIGINT or SIGTERM, then shut it down cleanly (``run_node.py node``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    node = await launch_node(config, shutdown_timeout=5.0)
    try:
        await stop.wait()
    finally:
        await node.stop()
