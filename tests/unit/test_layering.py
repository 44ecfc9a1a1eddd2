"""Import arrows point one way (HOUSE_STYLE): a cheap guard against layering drift.

run_node -> node -> network -> consensus; node -> diagnostics (plug-in);
training -> diagnostics. consensus is pure; nothing but training imports TensorFlow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "consensus": {"node", "network", "diagnostics", "training", "asyncio", "aiohttp", "sqlite3", "logging", "time",
                  "random", "secrets", "os", "socket", "tensorflow", "keras"},
    "network": {"node", "diagnostics", "training", "tensorflow", "keras", "sqlite3"},
    "node": {"training", "tensorflow", "keras"},
    "diagnostics": {"node", "network", "training", "tensorflow", "keras"},
}
NEVER = {"pickle", "marshal", "dill", "cPickle"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(package: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(imported_modules(path) & FORBIDDEN[package])}"
        for path in python_files(package)
        if imported_modules(path) & FORBIDDEN[package]
    }
    assert not offenders, offenders


def test_no_pickle_or_marshal_anywhere() -> None:
    files = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]
    offenders = [str(p.relative_to(ROOT)) for p in files if imported_modules(p) & NEVER]
    assert not offenders, offenders


def test_guard_detects_a_wrong_arrow(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import sqlite3\nfrom node.store import ChainStore\n")
    assert imported_modules(sample) & FORBIDDEN["consensus"] == {"sqlite3", "node"}
