"""A diagnosis acknowledged by POST /diagnoses survives a node restart.

Plan: the full result (heatmap included) is still served after the restart,
the record is mined on chain, and it verifies as intact.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.api import make_node_dir, require_models, running_node, sample_image, wait_until


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
