"""The API harness: a node's data dir, a running node on a loopback port (the node launcher, port 0), models and images."""


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
from harness.util import wait_until_async as wait_until  # noqa: F401  (re-exported: the API tests wait through it)
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
    options.setdefault("tls", False)  # plain HTTP unless a test asks for TLS (its client must then trust the node)
    config = NodeConfig(data_dir=data_dir, host="127.0.0.1", port=port or 0, plugin=plugin, models_dir=models_dir(),
                        **options)
    node = await launch_node(config)
    token = (data_dir / "api_token").read_text().strip()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningNode(node.app, node.url, token, session)
    finally:
        await node.stop()
