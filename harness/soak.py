"""Soak: diagnoses submitted continuously at several hosts while faults hit the network.

At the end every fault is undone, every node must reach the same tip, and every
acknowledged record must be on that chain exactly once. Used by
``bench/soak/run_soak.py`` (the recorded 10-minute run) and by a short CI test.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.client import ApiFailure, best_chain_record_counts, post_diagnosis
from harness.netns import NetnsTestnet
from harness.util import wait_until

REORG_LINE = re.compile(r"reorg depth=(\d+)")
SUBMIT_INTERVAL_S = 0.25  # per submitting host: bounded load
CONVERGE_TIMEOUT_S = 180.0


@dataclass
class SoakReport:
    hosts: int
    duration_s: float
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    submit_failures: int = 0
    faults: list[str] = field(default_factory=list)
    reorgs: int = 0
    reorg_depths: list[int] = field(default_factory=list)
    converge_s: float | None = None
    final_height: int = 0
    same_tip: bool = False
    netem: str = "not tried"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Submitter(threading.Thread):
    """Posts diagnoses to one host until stopped; keeps the acknowledged record ids."""

    def __init__(self, net: NetnsTestnet, index: int, images: Sequence[bytes], stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"submit-{index}", daemon=True)
        self.net, self.index, self.images, self.stop = net, index, images, stop
        self.rng = random.Random(seed)
        self.acknowledged: list[str] = []
        self.failures = 0

    def run(self) -> None:
        host = self.net.hosts[self.index]
        while not self.stop.is_set():
            image = self.rng.choice(self.images)
            try:
                reply = post_diagnosis(host.url, host.token, {"ct": image}, age=self.rng.randint(30, 90),
                                       smoking=self.rng.choice(["never", "former", "current"]),
                                       family_history=self.rng.random() < 0.3, patient_ref=f"soak-{self.rng.random()}",
                                       timeout=20)
                self.acknowledged.append(str(reply["record_id"]))
            except (OSError, ApiFailure, KeyError, ValueError):
                self.failures += 1  # host down or cut off: not acknowledged, nothing to check
            self.stop.wait(SUBMIT_INTERVAL_S)


def apply_random_fault(net: NetnsTestnet, rng: random.Random, report: SoakReport, stop: threading.Event) -> None:
    """One fault, held for a random 2-6 s, then undone."""
    kind = rng.choice(["partition", "cut", "kill"])
    hold = rng.uniform(2.0, 6.0)
    if kind == "partition":
        members = list(range(net.count))
        rng.shuffle(members)
        split = rng.randint(1, net.count - 1)
        groups = [sorted(members[:split]), sorted(members[split:])]
        net.partition(groups)
        report.faults.append(f"partition {groups} for {hold:.1f}s")
        stop.wait(hold)
        net.heal()
    elif kind == "cut":
        index = rng.randrange(net.count)
        net.cut_link(index)
        report.faults.append(f"cut host {index} for {hold:.1f}s")
        stop.wait(hold)
        net.restore_link(index)
    else:
        index = rng.randrange(net.count)
        net.kill_node(index)
        report.faults.append(f"kill -9 host {index}, restart after {hold:.1f}s")
        stop.wait(hold)
        net.start_node(index)


def converged(net: NetnsTestnet, acknowledged: set[str]) -> bool:
    try:
        statuses = [net.status(h.index) for h in net.hosts]
    except OSError:
        return False
    if len({s["tip_hash"] for s in statuses}) != 1 or any(s["pending_records"] for s in statuses):
        return False
    counts, tip = best_chain_record_counts(net.hosts[0].url)
    return tip == statuses[0]["tip_hash"] and acknowledged <= set(counts)


def collect_reorgs(net: NetnsTestnet, report: SoakReport) -> None:
    for host in net.hosts:
        text = host.log_path.read_text(errors="replace") if host.log_path.exists() else ""
        report.reorg_depths.extend(int(m.group(1)) for m in REORG_LINE.finditer(text))
    report.reorgs = len(report.reorg_depths)


def run_soak(work_dir: Path, images: Sequence[bytes], hosts: int = 5, duration_s: float = 60.0, submitters: int = 3,
             seed: int = 1) -> SoakReport:
    rng = random.Random(seed)
    report = SoakReport(hosts=hosts, duration_s=duration_s)
    stop = threading.Event()
    with NetnsTestnet(hosts, work_dir, diagnostics=True) as net:
        report.netem = "applied 20 ms, 1 % loss on host 0" if net.netem(0, 20, 1.0) else str(net.netem_unavailable_reason)
        threads = [Submitter(net, i % hosts, images, stop, seed * 100 + i) for i in range(submitters)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            apply_random_fault(net, rng, report, stop)
            stop.wait(rng.uniform(0.5, 2.0))
        stop.set()
        for thread in threads:
            thread.join(30)
        net.heal()
        for host in net.hosts:
            if host.process is None:
                net.start_node(host.index)
        last_fault = time.monotonic()
        acknowledged = {record for thread in threads for record in thread.acknowledged}
        report.acknowledged = len(acknowledged)
        report.submit_failures = sum(t.failures for t in threads)
        try:
            wait_until(lambda: converged(net, acknowledged), CONVERGE_TIMEOUT_S, "all nodes to converge", interval=0.5)
            report.converge_s = round(time.monotonic() - last_fault, 2)
        except TimeoutError:
            report.converge_s = None
        statuses = [net.status(h.index) for h in net.hosts]
        report.same_tip = len({s["tip_hash"] for s in statuses}) == 1
        report.final_height = int(statuses[0]["height"])
        counts, _ = best_chain_record_counts(net.hosts[0].url)
        report.lost = len(acknowledged - set(counts))
        report.duplicated = sum(1 for record in acknowledged if counts.get(record, 0) > 1)
        collect_reorgs(net, report)
    return report
