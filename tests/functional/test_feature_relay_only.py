"""A relay-only node starts fast and small, and no node ever imports TensorFlow.

Plan:
1. Start a relay-only node (``--no-diagnostics``) as a real process; it answers
   /api/v1/status quickly, and has imported neither TensorFlow nor LiteRT.
2. Load the default diagnostic plug-in in a fresh interpreter: LiteRT is
   loaded, TensorFlow still is not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.util import wait_for_node, wait_for_port_file
from node.genesis import build_genesis, write_genesis
from node.identity import init_identity

REPO_ROOT = Path(__file__).resolve().parents[2]
START_LIMIT_S = 15.0  # generous: CI shares two cores with other work

PROBE = """
import asyncio, json, sys
from aiohttp import web
from node.app import create_app
from node.config import NodeConfig
from pathlib import Path

async def main():
    app = create_app(NodeConfig(data_dir=Path(sys.argv[1]), port=int(sys.argv[2]), plugin=sys.argv[3]))
    runner = web.AppRunner(app)
    await runner.setup()
    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'ai_edge_litert', 'tflite_runtime'))
    await runner.cleanup()
    print(json.dumps(heavy))

asyncio.run(main())
"""


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    identity = init_identity(tmp_path, "Relay Hospital")
    write_genesis(tmp_path / "genesis.json", build_genesis("relay", [identity.member], int(time.time() * 1000)))
    return tmp_path


def heavy_modules(data_dir: Path, plugin: str) -> list[str]:
    output = subprocess.run([sys.executable, "-c", PROBE, str(data_dir), "0", plugin], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(output.stdout.strip().splitlines()[-1]))


def test_relay_only_node_starts_fast_without_ml_libraries(data_dir: Path) -> None:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "run_node.py", "node", "--data-dir", str(data_dir), "--port", "0",
                                "--no-diagnostics"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_for_port_file(data_dir, process, START_LIMIT_S, "the relay-only node")
        status = wait_for_node(f"https://127.0.0.1:{port}", process, START_LIMIT_S, "the relay-only node")
        assert status["height"] == 0
        print(f"relay-only node answered after {time.monotonic() - started:.2f} s")
    finally:
        process.terminate()
        process.wait(10)
    assert heavy_modules(data_dir, "none") == []


def test_diagnostic_node_uses_litert_never_tensorflow(data_dir: Path) -> None:
    if not (REPO_ROOT / "models" / "ct" / "model.tflite").exists():
        pytest.fail("models/ct/model.tflite is missing: the node's default models must be committed")
    modules = heavy_modules(data_dir, "mobilenetv2")
    assert any(m.startswith("ai_edge_litert") for m in modules)
    assert not [m for m in modules if m.split(".")[0] in ("tensorflow", "keras")]
