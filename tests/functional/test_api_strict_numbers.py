"""Attack reproduced: ``age=²`` / ``age=①`` answered 500 and ``age=٣٤`` was stored as 34.

Plan:
1. A node with the real plug-in; POST /diagnoses with a real CT slice and each
   non-ASCII number as the age: 400 ``bad-risk-factor`` with a reason, no record.
2. The node keeps serving: the same upload with ``age=34`` is recorded (202).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.api import (
    make_node_dir,
    require_models,
    running_node,
    sample_image,
)


@pytest.mark.parametrize("age", ["²", "①", "٣٤", "３４"])
async def test_non_ascii_age_is_a_400_with_a_reason(tmp_path: Path, age: str) -> None:
    require_models("ct")
    async with running_node(make_node_dir(tmp_path), plugin="mobilenetv2") as node:
        status, reply = await node.post_diagnosis({"ct": sample_image("ct")}, {"age": age})
        assert status == 400, reply
        assert reply["error"] == "bad-risk-factor"
        assert "0-9" in reply["message"]
        status, reply = await node.post_diagnosis({"ct": sample_image("ct")}, {"age": "34"})
        assert status == 202, reply
        assert reply["result"]["risk_factors"]["age"] == 34
