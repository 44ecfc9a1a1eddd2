"""Attack reproduced against a real node process: uploads that amplify in memory (issue 12).

Before: six authenticated uploads of 39.7-megapixel RGB PNGs (115 KB each) took a
node from 721 MiB to a 2.67 GB peak and held both diagnosis workers for 44 s; a
3 MB Deflated DICOM took it to 6.5 GiB.

Plan:
1. Start ``run_node.py node`` (real plug-in, real models) as its own process and
   warm it up with two honest diagnoses; reset its peak RSS (VmHWM).
2. Six concurrent uploads of a 39.7 MP RGB PNG, a 3 MB Deflated DICOM that
   inflates to 3 GB, and honest CT diagnoses sent all the while.
3. Every attack upload is refused with a 4xx and a reason, every honest one is
   recorded (202; a 429 of the per-token limit is retried), and the node's peak
   RSS stays under 300 MB above its warmed-up baseline.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from harness.util import wait_for_node, wait_for_port_file
from tests import bombs
from tests.conftest import REPO_ROOT
from tests.support.api import (
    make_node_dir,
    require_models,
    sample_image,
)

RSS_BUDGET_MIB = 300
ATTACK_UPLOADS = 6
HONEST_RETRY_S = 30.0


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


async def send(session: aiohttp.ClientSession, url: str, token: str, field: str, data: bytes,
               filename: str, age: str = "60") -> tuple[int, dict, str | None]:
    """POST one diagnosis; the status, the JSON reply and the Retry-After header (None if absent)."""
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    form.add_field("age", age)
    async with session.post(f"{url}/api/v1/diagnoses", data=form,
                            headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None), response.headers.get("Retry-After")


async def post(session: aiohttp.ClientSession, url: str, token: str, field: str, data: bytes,
               filename: str, age: str = "60") -> tuple[int, dict]:
    status, reply, _ = await send(session, url, token, field, data, filename, age)
    return status, reply


async def honest(session: aiohttp.ClientSession, url: str, token: str, image: bytes) -> int:
    """One honest diagnosis; a 429 (per-token limit while the attack runs) is retried when Retry-After says."""
    deadline = time.monotonic() + HONEST_RETRY_S
    while True:
        status, reply, retry_after = await send(session, url, token, "ct", image, "ct.png")
        if status != 429 or time.monotonic() > deadline:
            assert status == 202, reply
            return status
        assert retry_after is not None, f"a 429 without Retry-After: {reply}"
        await asyncio.sleep(min(float(retry_after), max(0.0, deadline - time.monotonic())))  # the node's own back-off


async def test_amplifying_uploads_stay_within_the_memory_budget(tmp_path: Path) -> None:
    require_models("ct")
    data_dir = make_node_dir(tmp_path)
    # A real node process (its RSS is what is measured); starting it does not block.
    process = subprocess.Popen([sys.executable, "run_node.py", "node", "--data-dir", str(data_dir),
                                "--port", "0", "--no-tls"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # plain HTTP (--no-tls): this test measures decoding memory, not TLS
        url = f"http://127.0.0.1:{wait_for_port_file(data_dir, process, 120)}"
        wait_for_node(url, process, 120)
        token = (data_dir / "api_token").read_text().strip()
        image = sample_image("ct").read_bytes()
        png_bomb, dicom_bomb = bombs.make_rgb_png_bomb(), bombs.make_deflated_dicom_bomb()
        assert len(png_bomb) < 200_000 and len(dicom_bomb) < 3_500_000
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
            for _ in range(2):
                await honest(session, url, token, image)
            baseline_kib = status_kib(process.pid, "VmRSS")
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            started = time.monotonic()
            attack = [post(session, url, token, "xray", png_bomb, "big.png") for _ in range(ATTACK_UPLOADS)]
            attack.append(post(session, url, token, "ct", dicom_bomb, "bomb.dcm"))
            honest_uploads = [honest(session, url, token, image) for _ in range(4)]
            results = await asyncio.gather(*attack, *honest_uploads)
            elapsed = time.monotonic() - started
        peak_kib = status_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=30)
    attack_results, honest_results = results[:len(attack)], results[len(attack):]
    extra_mib = (peak_kib - baseline_kib) / 1024
    print(f"baseline {baseline_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB, extra {extra_mib:.0f} MiB, "
          f"{elapsed:.1f} s; attack answers {[(s, r.get('error')) for s, r in attack_results]}")
    for status, reply in attack_results:
        assert 400 <= status < 500 and reply.get("error") in ("too-many-pixels", "too-many-diagnoses"), reply
    assert any(reply.get("error") == "too-many-pixels" for _, reply in attack_results)
    assert honest_results == [202] * 4
    assert extra_mib < RSS_BUDGET_MIB
