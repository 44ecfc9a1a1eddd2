"""Fixtures shared by several functional test modules (pytest finds them here without an import)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.orthanc import Orthanc, find_orthanc
from tests.unit.test_diagnostics_helpers import MODALITIES, MODELS_DIR


@pytest.fixture(scope="module")
def plugin() -> Iterator[object]:
    """The default plug-in with every exported model (skips if none is exported)."""
    from diagnostics import load_plugin

    available = [m for m in MODALITIES if (MODELS_DIR / m / "model.tflite").exists()]
    if not available:
        pytest.skip(f"no exported model under {MODELS_DIR}; run training first")
    loaded = load_plugin("mobilenetv2", {"models_dir": str(MODELS_DIR)})
    yield loaded
    loaded.close()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Any]:
    find_orthanc()
    started: list[Orthanc] = []

    def make(dicom_port: int = 0) -> Orthanc:
        pacs = Orthanc(tmp_path / "orthanc", dicom_port=dicom_port)
        started.append(pacs)
        return pacs

    yield make
    for pacs in started:
        pacs.stop()
