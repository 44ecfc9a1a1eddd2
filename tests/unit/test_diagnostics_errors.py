"""Every diagnosis reason code raised anywhere has its HTTP status in the one registry."""

from __future__ import annotations

import ast
from pathlib import Path

from diagnostics.errors import REASON_CODES, get_http_status

ROOT = Path(__file__).resolve().parents[2]
RAISERS = {"DiagnosisError", "ImageError", "RecordError"}


def raised_codes() -> set[str]:
    codes = set()
    for path in [*(ROOT / "diagnostics").rglob("*.py"), *(ROOT / "node").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RAISERS
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                codes.add(node.args[0].value)
    return codes


def test_every_raised_code_is_registered() -> None:
    codes = raised_codes()
    assert {"no-image", "bad-risk-factor", "bad-result"} <= codes  # the scan finds them
    assert not codes - set(REASON_CODES) - {"bad-details"}  # bad-details: stored data, answered 500 on purpose


def test_statuses() -> None:
    assert all(400 <= status < 600 for status in REASON_CODES.values())
    assert get_http_status("file-too-large") == 413 and get_http_status("bad-config") == 503
    assert get_http_status("decode-busy") == 503
    assert get_http_status("not-registered-yet") == 422
