"""The plug-in registry, the light import of ``diagnostics`` and its layering rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import diagnostics
from diagnostics import DEFAULT_PLUGIN_NAME, DiagnosisError, load_plugin, register_plugin
from diagnostics.plugin import PLUGIN_REGISTRY
from tests.unit.test_diagnostics_helpers import MODELS_DIR, REPO_ROOT, require_models

PACKAGE_DIR = Path(diagnostics.__file__).resolve().parent
FORBIDDEN_IMPORTS = ("tensorflow", "keras", "node", "network", "consensus", "training")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for statement in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(statement, ast.Import):
            names.update(alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
            names.add(statement.module)
    return names


def test_diagnostics_never_imports_tensorflow_or_the_layers_above_it() -> None:
    offenders = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN_IMPORTS}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_diagnostics_is_light() -> None:
    loaded = run_python("import sys, diagnostics; print(sorted(m for m in ('ai_edge_litert', 'pydicom', "
                        "'tensorflow', 'keras', 'numpy') if m in sys.modules))")
    assert loaded == "[]"


def test_loading_the_plugin_loads_litert_but_never_tensorflow() -> None:
    require_models()
    modules = run_python(
        "import sys, diagnostics\n"
        f"plugin = diagnostics.load_plugin('mobilenetv2', {{'models_dir': {str(MODELS_DIR)!r}}})\n"
        "print('ai_edge_litert' in sys.modules, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
        "plugin.close()")
    assert modules == "True False False"


@pytest.mark.parametrize("name", [None, "none", "None", " NONE "])
def test_no_plugin_means_relay_only(name: str | None) -> None:
    assert load_plugin(name, {}) is None


def test_unknown_plugin_is_a_clear_error() -> None:
    with pytest.raises(DiagnosisError) as caught:
        load_plugin("resnet-from-nowhere", {})
    assert caught.value.code == "unknown-plugin"
    assert "mobilenetv2" in caught.value.message


def test_default_plugin_is_registered() -> None:
    assert DEFAULT_PLUGIN_NAME == "mobilenetv2" and DEFAULT_PLUGIN_NAME in PLUGIN_REGISTRY


def test_plugin_target_must_exist_and_return_a_plugin() -> None:
    with pytest.raises(DiagnosisError) as caught:
        load_plugin("diagnostics.no_such_module:create_plugin", {})
    assert caught.value.code == "unknown-plugin"
    with pytest.raises(DiagnosisError) as caught:
        load_plugin("collections:OrderedDict", {})  # importable, but not a diagnostic plug-in
    assert caught.value.code == "bad-plugin"


def test_a_hospital_can_register_its_own_plugin(tmp_path: Path) -> None:
    """A plug-in in another package, registered by name, loads through the same path."""
    (tmp_path / "hospital_plugin.py").write_text(
        "from diagnostics.mobilenetv2 import create_plugin as base\n"
        "def create_plugin(options):\n"
        "    plugin = base(options)\n"
        "    plugin.name = 'hospital-cnn'\n"
        "    return plugin\n", encoding="utf-8")
    require_models()
    sys.path.insert(0, str(tmp_path))
    try:
        register_plugin("hospital-cnn", "hospital_plugin:create_plugin")
        plugin = load_plugin("hospital-cnn", {"models_dir": str(MODELS_DIR)})
        assert plugin is not None and plugin.info()["plugin"] == "hospital-cnn"
        plugin.close()
    finally:
        sys.path.remove(str(tmp_path))
        PLUGIN_REGISTRY.pop("hospital-cnn", None)
    with pytest.raises(DiagnosisError) as caught:
        register_plugin("broken", "no_colon_here")
    assert caught.value.code == "bad-config"


def test_bad_plugin_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DiagnosisError) as caught:
        load_plugin("mobilenetv2", {"models_dir": str(tmp_path)})
    assert caught.value.code == "model-unavailable"
    with pytest.raises(DiagnosisError) as caught:
        load_plugin("mobilenetv2", {"models_dir": str(tmp_path), "max_batchsize": 4})
    assert caught.value.code == "bad-config"
