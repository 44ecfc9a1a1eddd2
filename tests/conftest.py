"""Shared pytest configuration: paths to ../shared and the repo root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SHARED_DIR = Path(os.environ.get("LUNGLEDGER_SHARED", REPO_ROOT.parent / "shared"))
DATA_DIR = SHARED_DIR / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"shared data folder {DATA_DIR} is missing (set LUNGLEDGER_SHARED)")
    return DATA_DIR
