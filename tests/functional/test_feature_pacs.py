"""The node in a hospital, against a real PACS (Orthanc): DICOM in, SR + heatmap back, FHIR out.

Plan:
1. Orthanc (Debian binary, own config, loopback ports) and a node with the real
   plug-in whose DICOM listener (bound on port 0) Orthanc is told about as modality
   ``lungledger`` and whose report destination is Orthanc.
2. Orthanc sends the four real CT files of ../shared/data/dicom (one series) and a
   synthetic 12-slice series built from them with new UIDs to the node (C-STORE).
3. Each series becomes one mined record whose result names the slice picked by the
   series rule; the received files are deleted; no patient attribute is on chain.
4. The node's Comprehensive SR and heatmap Secondary Capture arrive in Orthanc in the
   source study; read back over Orthanc's REST API, the SR's finding, risk level,
   probabilities, model SHA-256, record id, block height and hash match the node's
   record and the block on chain.
5. GET /diagnoses/{id}/fhir is a valid FHIR Bundle (fhir.resources) for that record.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from node.app import CHAIN
from node.hospital import HOSPITAL
from tests.dicom_builders import build_series, real_dicom_files
from tests.support.api import (
    RunningNode,
    make_node_dir,
    require_models,
    running_node,
    wait_until,
)
from tests.orthanc import ORTHANC_AE_TITLE, Orthanc

API = "/api/v1"
NODE_AE_TITLE = "LUNGLEDGER"
PACS_TIMEOUT_S = 120.0


def hospital_section(dicom_port: int, pacs_dicom_port: int, **overrides: Any) -> dict[str, Any]:
    return {"ae_title": NODE_AE_TITLE, "dicom_port": dicom_port, "quiet_seconds": 1.0,
            "destination": {"ae_title": ORTHANC_AE_TITLE, "host": "127.0.0.1", "port": pacs_dicom_port},
            "retry_initial_seconds": 0.2, "retry_max_seconds": 1.0, **overrides}


@pytest.fixture
async def pacs_and_node(tmp_path: Path, orthanc_factory: Any) -> AsyncIterator[tuple[Orthanc, RunningNode]]:
    require_models("ct")
    pacs = orthanc_factory()
    await asyncio.to_thread(pacs.start)
    async with running_node(make_node_dir(tmp_path), plugin="mobilenetv2",
                            hospital=hospital_section(0, pacs.dicom_port)) as node:
        node_port = node.app[HOSPITAL].dicom_port
        assert node_port is not None
        await asyncio.to_thread(pacs.add_modality, "lungledger", NODE_AE_TITLE, "127.0.0.1", node_port)
        yield pacs, node


def sr_values(sr: pydicom.Dataset) -> dict[str, Any]:
    """Concept name meaning -> value (text, number, or referenced SOP instance) of the SR's content items."""
    values: dict[str, Any] = {}
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT":
            values[name] = item.TextValue
        elif item.ValueType == "NUM":
            values[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "IMAGE":
            values[name] = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    return values


async def recorded_series(node: RunningNode, count: int) -> list[dict[str, Any]]:
    service = node.app[HOSPITAL]

    async def done() -> bool:
        return service.stats["series_recorded"] + service.stats["series_refused"] >= count

    await wait_until(done, PACS_TIMEOUT_S, f"{count} series to be diagnosed")
    _, status = await node.get(f"{API}/hospital", headers=node.auth)
    return list(reversed(status["series_log"][:count]))


async def check_report_in_pacs(pacs: Orthanc, node: RunningNode, study_uid: str, record_id: str) -> dict[str, Any]:
    async def arrived() -> bool:
        reports = await asyncio.to_thread(pacs.find_instances, study_uid, "SR")
        pictures = await asyncio.to_thread(pacs.find_instances, study_uid, "OT")
        return bool(reports) and bool(pictures)

    await wait_until(arrived, PACS_TIMEOUT_S, f"the SR and SC of record {record_id} to arrive in Orthanc")
    (sr_id,) = await asyncio.to_thread(pacs.find_instances, study_uid, "SR")
    sr = pydicom.dcmread(io.BytesIO(await asyncio.to_thread(pacs.instance_file, sr_id)))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == study_uid
    values = sr_values(sr)
    _, diagnosis = await node.get(f"{API}/diagnoses/{record_id}", headers=node.auth)
    _, on_chain = await node.get(f"{API}/records/{record_id}")
    _, block = await node.get(f"{API}/blocks/{on_chain['block_height']}")
    result = diagnosis["result"]
    assert values["Ledger record id"] == record_id and record_id in block["record_ids"]
    assert values["Ledger block height"] == str(on_chain["block_height"]) == str(block["height"])
    assert values["Ledger block hash"] == on_chain["block_hash"] == block["hash"]
    assert values["Finding"] == result["label"] and values["Risk level"] == result["risk_level"]
    assert values["CT model probability"] == pytest.approx(result["modalities"]["ct"]["probability"], abs=1e-6)
    assert values["Fused probability"] == pytest.approx(result["fused_probability"], abs=1e-6)
    assert result["modalities"]["ct"]["model"]["sha256"] in values["CT model"]
    assert values["Research use"] == "Research use only — not for diagnostic use"
    assert values["Source of Measurement"] == result["dicom"]["sop_instance_uid"]
    (sc_id,) = await asyncio.to_thread(pacs.find_instances, study_uid, "OT")
    sc = pydicom.dcmread(io.BytesIO(await asyncio.to_thread(pacs.instance_file, sc_id)))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB"
    assert sc.pixel_array.shape[2] == 3 and sc.StudyInstanceUID == study_uid
    return diagnosis


async def test_orthanc_round_trip_with_series_result(pacs_and_node: tuple[Orthanc, RunningNode]) -> None:
    pacs, node = pacs_and_node
    real = [path.read_bytes() for path in real_dicom_files()]
    synthetic = build_series(12, patient_id="LL-SYNTH-0042")
    real_ids = [await asyncio.to_thread(pacs.upload, data) for data in real]
    synthetic_ids = [await asyncio.to_thread(pacs.upload, data) for data in synthetic]
    await asyncio.to_thread(pacs.send_to, "lungledger", real_ids)
    await asyncio.to_thread(pacs.send_to, "lungledger", synthetic_ids)

    logged = await recorded_series(node, 2)
    assert [entry["outcome"] for entry in logged] == ["recorded", "recorded"], logged
    assert [entry["instances"] for entry in logged] == [4, 12]
    chain = node.app[CHAIN]
    for entry, source in zip(logged, (real[0], synthetic[0]), strict=True):
        study_uid = pydicom.dcmread(io.BytesIO(source), stop_before_pixels=True).StudyInstanceUID
        diagnosis = await check_report_in_pacs(pacs, node, study_uid, entry["record_id"])
        series = diagnosis["result"]["series"]
        assert series["slices_diagnosed"] >= 1 and series["rule"].startswith("highest CT model probability")
        probabilities = [p for _, p in series["slice_probabilities"]]
        assert series["top_slice"]["probability"] == pytest.approx(max(probabilities), abs=1e-6)
        assert diagnosis["result"]["risk_factors"] == {"age": 58, "smoking": None, "family_history": None}
        # Nothing identifying on chain: the record's bytes do not contain the PatientID or name.
        [record] = await chain.get_record_locations([bytes.fromhex(entry["record_id"])])
        assert record is not None
        [block_bytes] = await chain.get_blocks_bytes([record[0].block_hash])
        assert block_bytes is not None
        for secret in (b"Lung_Dx-A0001", b"LL-SYNTH-0042", b"Test^Patient"):
            assert secret not in block_bytes
        assert diagnosis["patient_pseudonym"] and len(diagnosis["patient_pseudonym"]) == 64
    inbox = node.app[HOSPITAL].inbox
    assert not list(inbox.glob("*/*.dcm")), "received files must be deleted after diagnosis"


async def test_fhir_bundle_is_valid(pacs_and_node: tuple[Orthanc, RunningNode]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    pacs, node = pacs_and_node
    ids = [await asyncio.to_thread(pacs.upload, p.read_bytes()) for p in real_dicom_files()]
    await asyncio.to_thread(pacs.send_to, "lungledger", ids)
    (entry,) = await recorded_series(node, 1)
    record_id = entry["record_id"]

    async def mined() -> bool:
        return (await node.get(f"{API}/records/{record_id}"))[1]["status"] == "mined"

    await wait_until(mined, 60, "the record to be mined")
    async with node.session.get(f"{node.url}{API}/diagnoses/{record_id}/fhir", headers=node.auth) as response:
        assert response.status == 200 and response.content_type == "application/fhir+json"
        body = await response.json(content_type=None)
    bundle = Bundle.model_validate(body)
    resources = {e.resource.__resource_type__: e.resource for e in bundle.entry}
    report = resources["DiagnosticReport"]
    assert report.status == "final" and report.identifier[0].value == record_id
    _, on_chain = await node.get(f"{API}/records/{record_id}")
    assert report.identifier[1].value == f"{on_chain['block_height']}:{on_chain['block_hash']}"
    assert len(report.result) == 5 and "Research use only" in report.conclusion
    study = resources["ImagingStudy"]
    source = pydicom.dcmread(real_dicom_files()[0], stop_before_pixels=True)
    assert study.identifier[0].value == f"urn:oid:{source.StudyInstanceUID}"
    assert report.subject.identifier.system == "urn:lungledger:patient-pseudonym"
    assert "Lung_Dx-A0001" not in str(body)
    status, error = await node.get(f"{API}/diagnoses/{'00' * 16}/fhir", headers=node.auth)
    assert status == 404 and error["error"] == "diagnosis-not-found"
