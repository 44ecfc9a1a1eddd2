"""Bounded schemathesis run against the node's own OpenAPI document: no server error, responses conform.

Plan:
1. Start a real node process (run_node.py node) on a loopback port: with the
   real plug-in when models are exported, relay-only otherwise.
2. Load /api/v1/openapi.json from it and let schemathesis generate requests
   for every operation, valid and invalid (25 examples each, token sent), checking that
   no response is a 5xx and that status codes, content types and bodies match
   the document.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import REPO_ROOT
from harness.util import wait_for_node, wait_for_port_file
from tests.support.api import make_node_dir, models_dir

START_TIMEOUT_S = 60
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def node_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = make_node_dir(tmp_path_factory.mktemp("schemathesis"))
    has_models = (models_dir() / "ct" / "model.tflite").exists()
    config = {"data_dir": str(data_dir), "host": "127.0.0.1", "port": 0, "models_dir": str(models_dir()),
              "plugin": "mobilenetv2" if has_models else "none", "log_level": "WARNING"}
    config_path = data_dir / "config.json"
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "run_node.py"), "node", "--data-dir", str(data_dir),
                                "--config", str(config_path)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    try:
        # the node serves HTTPS with its own certificate (not verified here)
        url = f"https://127.0.0.1:{wait_for_port_file(data_dir, process, START_TIMEOUT_S)}"
        wait_for_node(url, process, START_TIMEOUT_S)
        # Without a plug-in, POST /diagnoses answers 503 relay-only by design; send no token then,
        # so schemathesis sees the 401 path instead of a deliberate 5xx.
        token = (data_dir / "api_token").read_text().strip() if has_models else ""
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=30)


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


def make_run(operation: Any, mode: GenerationMode, headers: dict[str, str], calls: dict[str, int]) -> Callable[[], None]:
    """One hypothesis test over one operation in one generation mode, counting its calls.

    schemathesis.pytest.from_fixture does not work with pytest 9 yet, so hypothesis is driven directly.
    """
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, verify=False)
        calls[operation.label] = calls.get(operation.label, 0) + 1

    return run


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_api_conforms_and_never_fails(node_process: tuple[str, str]) -> None:
    url, token = node_process
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json", verify=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    calls: dict[str, int] = {}
    for operation, mode in itertools.product(operations, GenerationMode):
        try:
            make_run(operation, mode, headers, calls)()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise  # only an operation without parameters has nothing to make invalid
    assert set(calls) == {operation.label for operation in operations}
