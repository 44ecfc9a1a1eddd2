"""Helpers for the API tests (real nodes on loopback ports), and the durability test they enable.

Plan:
1. ``make_node_dir`` creates a node's keys, token and a one-member genesis in a
   temp dir; ``running_node`` serves ``create_app(config)`` on a free loopback
   port and stops it cleanly.
2. Test: a diagnosis acknowledged by POST /diagnoses survives a node restart —
   the full result (heatmap included) is still served, the record is on
   chain, and it verifies as intact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.config import NodeConfig
from node.genesis import build_genesis, write_genesis
from node.identity import init_identity
from node.launcher import launch_node
from harness.util import wait_until_async as wait_until
from tests.conftest import DATA_DIR, REPO_ROOT

GENESIS_TIME_MS = int(time.time() * 1000) - 60_000
TEST_DIFFICULTY = 2


def models_dir() -> Path:
    """The exported models the real plug-in serves (LUNGLEDGER_MODELS_DIR or models/)."""
    import os

    return Path(os.environ.get("LUNGLEDGER_MODELS_DIR", REPO_ROOT / "models"))


def require_models(*modalities: str) -> Path:
    folder = models_dir()
    missing = [m for m in modalities if not (folder / m / "model.tflite").exists()]
    if missing:
        pytest.skip(f"no exported {missing} model under {folder}: run training (python -m training.train) first")
    return folder


def sample_image(modality: str, label: str = "cancer", index: int = 0) -> Path:
    return sorted((DATA_DIR / modality / label).glob("*.png"))[index]


def make_node_dir(root: Path, name: str = "St. Test Hospital", difficulty: int = TEST_DIFFICULTY) -> Path:
    data_dir = root / name.lower().replace(" ", "-").replace(".", "")
    identity = init_identity(data_dir, name)
    write_genesis(data_dir / "genesis.json", build_genesis("api-test", [identity.member], GENESIS_TIME_MS, difficulty))
    return data_dir


@dataclass
class RunningNode:
    app: web.Application
    url: str
    token: str
    session: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.get(self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def post_diagnosis(self, images: dict[str, Path | bytes], fields: dict[str, str] | None = None,
                             query: str = "", auth: bool = True) -> tuple[int, Any]:
        form = aiohttp.FormData()
        for name, image in images.items():
            data = image.read_bytes() if isinstance(image, Path) else image
            form.add_field(name, data, filename=f"{name}.png", content_type="image/png")
        for name, value in (fields or {}).items():
            form.add_field(name, value)
        headers = self.auth if auth else {}
        async with self.session.post(f"{self.url}/api/v1/diagnoses{query}", data=form, headers=headers) as response:
            return response.status, await response.json(content_type=None)


@contextlib.asynccontextmanager
async def running_node(data_dir: Path, plugin: str | None = "none", port: int | None = None,
                       **options: Any) -> AsyncIterator[RunningNode]:
    config = NodeConfig(data_dir=data_dir, host="127.0.0.1", port=port or 0, plugin=plugin, models_dir=models_dir(),
                        **options)
    node = await launch_node(config)
    token = (data_dir / "api_token").read_text().strip()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningNode(node.app, node.url, token, session)
    finally:
        await node.stop()


async def test_acknowledged_diagnosis_survives_restart(tmp_path: Path) -> None:
    folder = require_models("ct")
    data_dir = make_node_dir(tmp_path)
    async with running_node(data_dir, plugin="mobilenetv2", plugin_options={"models_dir": str(folder)}) as node:
        status, reply = await node.post_diagnosis({"ct": sample_image("ct")}, {"age": "61", "smoking": "current"})
        assert status == 202, reply
        record_id = reply["record_id"]
    async with running_node(data_dir, plugin="none") as node:
        status, stored = await node.get(f"/api/v1/diagnoses/{record_id}", headers=node.auth)
        assert status == 200
        assert stored["result"] == reply["result"]
        assert stored["result"]["modalities"]["ct"]["heatmap_png"]

        async def mined() -> bool:
            return (await node.get(f"/api/v1/records/{record_id}"))[1]["status"] == "mined"

        # A relay-only node still mines its own pending records after a restart.
        await wait_until(mined, 30, "the record to be mined after restart")
        status, verdict = await node.get(f"/api/v1/records/{record_id}/verify")
        assert verdict["status"] == "intact", verdict
