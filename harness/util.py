"""Helpers every harness and functional test shares: waiting on conditions, reading a node's port back.

Tests never sleep for a fixed time to let something happen: they poll a
condition until it holds or a deadline passes (Bitcoin Core's ``wait_until``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``: only for external programs that cannot bind port 0
    and report the port (Orthanc, see tests/orthanc.py, which picks again when it loses the race). Nodes never
    use it: they bind port 0 through node/launcher.py and report the port back."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT_S, what: str = "condition",
               interval: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = DEFAULT_TIMEOUT_S,
                           what: str = "condition", interval: float = 0.02) -> None:
    """The same on the event loop; ``predicate`` may be a plain or an async function."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def make_self_signed_client_context() -> ssl.SSLContext:
    """For nodes the harness started itself: their HTTPS certificate is their own (self-signed), so it is not
    verified here; the links between nodes are verified (mutual TLS against the member keys)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


OWN_NODE_TLS = make_self_signed_client_context()


def wait_for_port_file(data_dir: Path, process: subprocess.Popen[Any] | None, timeout: float,
                       what: str = "the node") -> int:
    """The port a node started with port 0 bound, read from ``<data_dir>/port`` (node/launcher.py writes it).

    Remove a stale file before starting the node.
    """
    ports: list[int] = []

    def written() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before binding")
        try:
            ports.append(int((data_dir / "port").read_text().strip()))
        except (FileNotFoundError, ValueError):
            return False
        return True

    wait_until(written, timeout, f"{what} to write its port")
    return ports[-1]


def get_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The node's /api/v1/status, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/status", timeout=timeout, context=OWN_NODE_TLS) as response:
            return dict(json.loads(response.read()))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_for_node(url: str, process: subprocess.Popen[Any] | None, timeout: float, what: str = "the node") -> dict[str, Any]:
    """Wait until a node process answers /api/v1/status; fail at once if the process exits."""
    answers: list[dict[str, Any]] = []

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before answering")
        status = get_status(url)
        if status is not None:
            answers.append(status)
        return status is not None

    wait_until(answered, timeout, f"{what} to answer on {url}")
    return answers[-1]
