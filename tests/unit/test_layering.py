"""Import arrows point one way (HOUSE_STYLE): a cheap guard against layering drift.

run_node -> node -> network -> consensus; node -> diagnostics (plug-in);
training -> diagnostics. consensus is pure; nothing but training imports TensorFlow.
No import cycle anywhere in the project, counting imports inside functions
(deferred imports hide a cycle, they do not remove it).
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


PROJECT = ("consensus", "network", "node", "diagnostics", "training", "harness", "bench", "tests", "run_node.py")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [ROOT / "run_node.py"] + [p for package in PROJECT[:-1] for p in sorted((ROOT / package).rglob("*.py"))]
    return {module_name(path): path for path in files}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to: itself, or the closest package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def module_imports(path: Path, modules: dict[str, Path], root: Path = ROOT) -> set[str]:
    """Project modules imported anywhere in the file (top level, functions, TYPE_CHECKING blocks)."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            resolved = resolve(target, modules)
            if resolved is not None and resolved != this:
                found.add(resolved)
    return found


def find_import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle_anywhere() -> None:
    modules = project_modules()
    graph = {name: module_imports(path, modules) for name, path in modules.items()}
    assert not find_import_cycles(graph)


def test_cycle_guard_sees_deferred_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    modules = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py", "pkg.c": package / "c.py"}
    graph = {name: module_imports(path, modules, tmp_path) for name, path in modules.items()}
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_import_cycles(graph) == [["pkg.a", "pkg.b"]]


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


def test_store_is_storage_only() -> None:
    """Fork choice lives in consensus/ (BlockTree); node/store.py only applies its plans."""
    store = ROOT / "node" / "store.py"
    modules = project_modules()
    assert "consensus.forkchoice" not in module_imports(store, modules)
    assert len(store.read_text().splitlines()) <= 250
