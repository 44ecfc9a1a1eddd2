"""K test hosts as Linux network namespaces, one LungLedger node in each.

Topology: one bridge in the root namespace (address ``10.231.T.254``) and, per
host, a namespace ``llT-hI`` joined to it by a veth pair, with address
``10.231.T.I``. ``T`` is derived from this process's pid, so two harnesses on
one machine never share names or addresses. Only addresses inside the
namespaces this harness created are ever used.

Faults:
- ``cut_link(i)`` / ``restore_link(i)``: the host's veth goes down / up;
- ``partition(groups)`` / ``heal()``: blackhole routes between groups, so
  packets vanish as on a broken WAN link (no RST, no error: peers must notice
  through their own timeouts);
- ``kill_node(i)`` (SIGKILL) and ``start_node(i)``;
- ``netem(i, delay_ms, loss_percent)`` where the kernel has ``sch_netem``;
  otherwise it returns False and ``netem_unavailable_reason`` says why.

Everything is torn down by ``close()`` (also on exceptions through the context
manager). Needs root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.client import request_json
from harness.util import wait_for_node

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE_PORT = 8545
SUBNET_PREFIX = "10.231"
STOP_TIMEOUT_S = 10.0


class NetnsUnavailable(RuntimeError):
    """This machine cannot create network namespaces (not root, or no iproute2)."""


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def check_netns_support() -> None:
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 (`ip`) is not installed")


@dataclass
class Host:
    index: int
    namespace: str
    veth: str
    address: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    member_id: str = ""

    @property
    def url(self) -> str:
        return f"https://{self.address}:{NODE_PORT}"


@dataclass
class NetnsTestnet:
    """Create with ``count`` hosts; use as a context manager."""

    count: int
    work_dir: Path
    difficulty: int = 3
    diagnostics: bool = False
    node_args: Sequence[str] = ()
    hosts: list[Host] = field(default_factory=list)
    netem_unavailable_reason: str | None = None

    def __post_init__(self) -> None:
        self.tag = 20 + os.getpid() % 200
        self.bridge = f"ll{self.tag}br"
        self.blackholes: list[tuple[Host, str]] = []

    # ---------------------------------------------------------------- set-up
    def __enter__(self) -> NetnsTestnet:
        check_netns_support()
        try:
            self._create_network()
            self._create_identities()
            for host in self.hosts:
                self.start_node(host.index)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_network(self) -> None:
        self._remove_network()
        run_ip("link", "add", self.bridge, "type", "bridge")
        run_ip("addr", "add", f"{SUBNET_PREFIX}.{self.tag}.254/24", "dev", self.bridge)
        run_ip("link", "set", self.bridge, "up")
        for index in range(self.count):
            host = Host(index, f"ll{self.tag}-h{index}", f"ll{self.tag}v{index}", f"{SUBNET_PREFIX}.{self.tag}.{index + 1}",
                        self.work_dir / f"host{index}", self.work_dir / f"host{index}.log")
            run_ip("netns", "add", host.namespace)
            run_ip("link", "add", host.veth, "type", "veth", "peer", "name", f"{host.veth}p")
            run_ip("link", "set", f"{host.veth}p", "netns", host.namespace)
            run_ip("link", "set", host.veth, "master", self.bridge)
            run_ip("link", "set", host.veth, "up")
            self._in_host(host, "link", "set", f"{host.veth}p", "name", "eth0")
            self._in_host(host, "addr", "add", f"{host.address}/24", "dev", "eth0")
            self._in_host(host, "link", "set", "eth0", "up")
            self._in_host(host, "link", "set", "lo", "up")
            self.hosts.append(host)

    def _in_host(self, host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_ip("netns", "exec", host.namespace, "ip", *args, check=check)

    def _create_identities(self) -> None:
        python = sys.executable
        for host in self.hosts:
            subprocess.run([python, "run_node.py", "init", "--data-dir", str(host.data_dir), "--name", f"Hospital {host.index + 1}"],
                           cwd=REPO_ROOT, check=True, capture_output=True)
            info = json.loads((host.data_dir / "node.json").read_text())
            host.member_id = info["member_id"]
            host.token = (host.data_dir / "api_token").read_text().strip()
        genesis = self.work_dir / "genesis.json"
        members = [arg for host in self.hosts for arg in ("--member", str(host.data_dir))]
        subprocess.run([python, "run_node.py", "genesis", *members, "--out", str(genesis), "--difficulty", str(self.difficulty)],
                       cwd=REPO_ROOT, check=True, capture_output=True)

    # ----------------------------------------------------------------- nodes
    def start_node(self, index: int) -> None:
        host = self.hosts[index]
        peers = [arg for other in self.hosts if other is not host for arg in ("--peer", f"{other.address}:{NODE_PORT}")]
        command = [
            "ip", "netns", "exec", host.namespace, sys.executable, "run_node.py", "node",
            "--data-dir", str(host.data_dir), "--genesis", str(self.work_dir / "genesis.json"),
            "--host", host.address, "--port", str(NODE_PORT), *peers, *self.node_args,
        ]
        if not self.diagnostics:
            command.append("--no-diagnostics")
        log = host.log_path.open("ab")
        host.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_node(host.url, host.process, 60, f"node {index} (log: {host.log_path})")


    def kill_node(self, index: int) -> None:
        host = self.hosts[index]
        if host.process is not None and host.process.poll() is None:
            host.process.send_signal(signal.SIGKILL)
            host.process.wait()
        host.process = None

    def stop_node(self, index: int) -> None:
        host = self.hosts[index]
        if host.process is None:
            return
        if host.process.poll() is None:
            host.process.send_signal(signal.SIGTERM)
            try:
                host.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait()
        host.process = None

    # ---------------------------------------------------------------- faults
    def cut_link(self, index: int) -> None:
        run_ip("link", "set", self.hosts[index].veth, "down")

    def restore_link(self, index: int) -> None:
        run_ip("link", "set", self.hosts[index].veth, "up")

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Blackhole all traffic between hosts of different groups."""
        group_of = {index: number for number, group in enumerate(groups) for index in group}
        for host in self.hosts:
            for other in self.hosts:
                if other is not host and group_of.get(host.index) != group_of.get(other.index):
                    self._in_host(host, "route", "add", "blackhole", f"{other.address}/32")
                    self.blackholes.append((host, other.address))

    def heal(self) -> None:
        for host, address in self.blackholes:
            self._in_host(host, "route", "del", "blackhole", f"{address}/32", check=False)
        self.blackholes.clear()
        for host in self.hosts:
            self.restore_link(host.index)

    def netem(self, index: int, delay_ms: int = 0, loss_percent: float = 0.0) -> bool:
        """Latency and loss on a host's link; False (with the reason kept) where netem is missing."""
        host = self.hosts[index]
        result = run_ip("netns", "exec", host.namespace, "true", check=False)  # namespace still there
        if result.returncode != 0:
            return False
        tc = subprocess.run(
            ["ip", "netns", "exec", host.namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
             "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%"],
            capture_output=True, text=True,
        )
        if tc.returncode != 0:
            self.netem_unavailable_reason = f"tc netem unavailable: {tc.stderr.strip() or tc.stdout.strip()}"
            return False
        return True

    # ------------------------------------------------------------------- API
    def get(self, index: int, path: str, timeout: float = 5) -> Any:
        return request_json(self.hosts[index].url + path, timeout=timeout)

    def status(self, index: int) -> dict[str, Any]:
        return dict(self.get(index, "/api/v1/status"))

    def running(self) -> list[Host]:
        return [h for h in self.hosts if h.process is not None and h.process.poll() is None]

    # -------------------------------------------------------------- teardown
    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(OSError):
                self.stop_node(host.index)
        self._remove_network()

    def _remove_network(self) -> None:
        for index in range(max(self.count, len(self.hosts))):
            run_ip("netns", "del", f"ll{self.tag}-h{index}", check=False)
            run_ip("link", "del", f"ll{self.tag}v{index}", check=False)
        run_ip("link", "del", self.bridge, check=False)
