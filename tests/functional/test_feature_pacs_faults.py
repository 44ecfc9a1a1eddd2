"""Hospital integration under faults: PACS down, bad DICOM input, the documented storescu command.

Plan:
1. PACS down then up: three series arrive by STOW-RS while Orthanc is stopped; every
   report send fails and is retried with back-off; the node restarts in between (the
   queue is on disk); Orthanc starts; all three SRs and SCs arrive: 0 results lost.
2. The exact ``storescu`` command of docs/INTEGRATION.md sends the four real CT
   files to the node's listener: one series recorded.
3. Bad input over DICOM (pynetdicom as the modality): a CT instance labelled MR, an
   instance without pixel data and one of another patient in the series are refused
   with status 0xA900 and a reason; an MR SOP class is not accepted in negotiation;
   a calling AE title not on the allow-list is rejected; the series goes on and is
   recorded from its good instances.
4. Bad input over STOW-RS: truncated and non-DICOM parts are refused with reasons
   (422 when nothing is left); a series over the instance limit is refused as a
   whole; the node keeps serving and a good series is recorded afterwards.
5. Risk factors added later make a new signed record that references the first,
   which stays as it was; both verify as intact.
6. A sender address outside ``allowed_hosts`` is rejected; a relay-only node
   acknowledges instances, then refuses the series with a reason and deletes them.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest

from harness.util import free_port
from node.hospital import HOSPITAL
from node.hospital.store import STATE_READY, STATE_SENT
from tests.dicom_builders import build_series, change_header, real_dicom_files
from tests.support.api import (
    RunningNode,
    make_node_dir,
    require_models,
    running_node,
    wait_until,
)
from tests.functional.test_feature_pacs import (
    API,
    NODE_AE_TITLE,
    PACS_TIMEOUT_S,
    hospital_section,
    recorded_series,
)
from tests.orthanc import Orthanc

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


async def post_studies(node: RunningNode, parts: list[bytes]) -> tuple[int, Any]:
    writer = aiohttp.MultipartWriter("related", boundary=uuid.uuid4().hex)
    for data in parts:
        writer.append(data, {"Content-Type": "application/dicom"})
    headers = {**node.auth, "Content-Type": f'multipart/related; type="application/dicom"; boundary={writer.boundary}'}
    async with node.session.post(f"{node.url}{API}/studies", data=writer, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_pacs_down_then_up_loses_no_result(tmp_path: Path, orthanc_factory: Any) -> None:
    require_models("ct")
    # The node must be configured with the PACS's address before the PACS exists, so this port is picked now
    # and bound when Orthanc starts, minutes later (the one pick-then-bind this scenario cannot avoid).
    pacs: Orthanc = orthanc_factory(free_port())  # not started: the PACS is down
    data_dir = make_node_dir(tmp_path)
    section = hospital_section(0, pacs.dicom_port)
    studies = []
    async with running_node(data_dir, plugin="mobilenetv2", hospital=section) as node:
        for index in range(3):
            series = build_series(4, patient_id=f"LL-DOWN-{index}")
            studies.append(pydicom.dcmread(io.BytesIO(series[0]), stop_before_pixels=True).StudyInstanceUID)
            status, reply = await post_studies(node, series)
            assert status == 200, reply
            assert [s["status"] for s in reply["series"]] == ["recorded"]
        service = node.app[HOSPITAL]
        store = service.require_store()

        async def all_failed_once() -> bool:
            jobs = await service.db(store.get_jobs, STATE_READY)
            return len(jobs) == 3 and all(job.attempts >= 1 and job.last_error for job in jobs)

        await wait_until(all_failed_once, PACS_TIMEOUT_S, "three reports to be built and to fail while the PACS is down")
    # Restart while the PACS is still down: the queue is on disk.
    async with running_node(data_dir, plugin="mobilenetv2", hospital=section) as node:
        service = node.app[HOSPITAL]
        store = service.require_store()
        assert (await service.db(store.count_jobs)) == {STATE_READY: 3}
        await asyncio.to_thread(pacs.start)

        async def all_sent() -> bool:
            return (await service.db(store.count_jobs)) == {STATE_SENT: 3}

        await wait_until(all_sent, PACS_TIMEOUT_S, "every queued report to be delivered once the PACS is up")
    for study_uid in studies:
        assert len(await asyncio.to_thread(pacs.find_instances, study_uid, "SR")) == 1
        assert len(await asyncio.to_thread(pacs.find_instances, study_uid, "OT")) == 1


@pytest.fixture
async def listening_node(tmp_path: Path) -> Any:
    require_models("ct")
    section = {"ae_title": NODE_AE_TITLE, "dicom_port": 0, "quiet_seconds": 1.0,
               "allowed_ae_titles": ["MODALITY", "STORESCU"], "max_series_instances": 8}
    async with running_node(make_node_dir(tmp_path), plugin="mobilenetv2", hospital=section) as node:
        yield node


async def test_documented_storescu_command(listening_node: RunningNode) -> None:
    storescu = shutil.which("storescu")
    if storescu is None:
        pytest.skip("dcmtk's storescu is not installed (Debian package 'dcmtk'; scripts/test.sh installs it)")
    port = listening_node.app[HOSPITAL].dicom_port
    files = [str(path) for path in real_dicom_files()]
    # The command in docs/INTEGRATION.md, with this test's port.
    command = [storescu, "-aet", "STORESCU", "-aec", NODE_AE_TITLE, "127.0.0.1", str(port), *files]
    completed = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    (entry,) = await recorded_series(listening_node, 1)
    assert entry["outcome"] == "recorded" and entry["instances"] == 4


def send_over_dicom(port: int, calling_ae: str, datasets: list[bytes], sop_class: str = CT_IMAGE_STORAGE) -> Any:
    """C-STORE each instance from a pynetdicom SCU; returns the statuses, or 'rejected'/'no-context'."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(sop_class, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE_TITLE)
    if assoc.is_rejected:
        return "rejected"
    if not assoc.is_established:
        return "no-context"  # pynetdicom aborts an association in which no presentation context was accepted
    try:
        statuses = []
        for data in datasets:
            dataset = pydicom.dcmread(io.BytesIO(data), force=True)
            status = assoc.send_c_store(dataset)
            statuses.append((int(status.Status), str(status.get("ErrorComment", ""))))
        return statuses
    finally:
        assoc.release()


async def test_bad_dicom_input_is_refused_with_a_reason(listening_node: RunningNode) -> None:
    node = listening_node
    port = node.app[HOSPITAL].dicom_port
    good = build_series(4, patient_id="LL-GOOD-1")
    header = pydicom.dcmread(io.BytesIO(good[0]), stop_before_pixels=True)
    mislabelled = change_header(build_series(1)[0], Modality="MR", SeriesInstanceUID=header.SeriesInstanceUID)
    other_patient = change_header(build_series(1)[0], PatientID="SOMEONE-ELSE",
                                  SeriesInstanceUID=header.SeriesInstanceUID, StudyInstanceUID=header.StudyInstanceUID)
    no_pixels = pydicom.dcmread(io.BytesIO(build_series(1)[0]))
    del no_pixels.PixelData
    buffer = io.BytesIO()
    no_pixels.save_as(buffer, enforce_file_format=True)
    statuses = await asyncio.to_thread(send_over_dicom, port, "MODALITY",
                                       [good[0], mislabelled, other_patient, buffer.getvalue(), *good[1:]])
    assert [code for code, _ in statuses] == [0, 0xA900, 0xA900, 0xA900, 0, 0, 0], statuses
    assert "Modality MR" in statuses[1][1] and "another patient" in statuses[2][1] and "pixel" in statuses[3][1]
    assert await asyncio.to_thread(send_over_dicom, port, "INTRUDER", good[:1]) == "rejected"
    assert await asyncio.to_thread(send_over_dicom, port, "MODALITY", good[:1], MR_IMAGE_STORAGE) == "no-context"
    (entry,) = await recorded_series(node, 1)
    assert entry["outcome"] == "recorded" and entry["instances"] == 5  # 4 stored + 1 refused (other patient)
    _, diagnosis = await node.get(f"{API}/diagnoses/{entry['record_id']}", headers=node.auth)
    assert diagnosis["result"]["series"]["instances_received"] == 5


async def test_bad_stow_input_is_refused_and_node_keeps_serving(listening_node: RunningNode) -> None:
    node = listening_node
    good = build_series(4, patient_id="LL-STOW-1")
    status, reply = await post_studies(node, [good[0][:2000], b"this is not DICOM at all"])
    assert status == 422 and reply["error"] == "no-acceptable-instance", reply
    assert "not-dicom" in reply["message"]
    status, reply = await post_studies(node, build_series(9))  # the listening node's limit is 8
    assert status == 422 and reply["series"][0]["code"] == "series-too-large", reply
    truncated = change_header(good[1], SOPInstanceUID="1.2.3.4.5.6.7.8.9")[:300_000]
    status, reply = await post_studies(node, [*good, truncated])
    assert status == 200, reply
    assert [i["status"] for i in reply["instances"]] == ["accepted"] * 4 + ["refused"]
    assert reply["instances"][4]["code"] == "truncated"
    assert reply["series"][0]["status"] == "recorded" and reply["series"][0]["series"]["slices_diagnosed"] >= 1
    async with node.session.post(f"{node.url}{API}/studies", data=b"x", headers=node.auth) as response:
        assert response.status == 415
    async with node.session.post(f"{node.url}{API}/studies", data=b"x") as response:
        assert response.status == 401
    assert not list(node.app[HOSPITAL].inbox.glob("*/*.dcm"))


async def test_risk_factors_added_later_make_a_new_record(listening_node: RunningNode) -> None:
    node = listening_node
    status, reply = await post_studies(node, build_series(4, patient_id="LL-AMEND-1"))
    assert status == 200, reply
    first_id = reply["series"][0]["record_id"]
    _, first = await node.get(f"{API}/diagnoses/{first_id}", headers=node.auth)
    assert first["result"]["risk_factors"] == {"age": 58, "smoking": None, "family_history": None}
    url = f"{node.url}{API}/diagnoses/{first_id}/risk-factors"
    async with node.session.post(url, json={"smoking": "current", "family_history": "yes"},
                                 headers=node.auth) as response:
        assert response.status == 202
        amended = await response.json()
    second_id = amended["record_id"]
    assert second_id != first_id and amended["amends"] == first_id
    result = amended["result"]
    assert result["risk_factors"] == {"age": 58, "smoking": "current", "family_history": True}
    assert result["amends"] == {"record_id": first_id, "patient_pseudonym": first["patient_pseudonym"]}
    # The image finding is the images': the model probabilities are the first record's.
    assert result["modalities"]["ct"]["probability"] == first["result"]["modalities"]["ct"]["probability"]
    assert result["risk_adjustment"]["total"] > first["result"]["risk_adjustment"]["total"]

    async def both_mined() -> bool:
        states = [(await node.get(f"{API}/records/{rid}"))[1]["status"] for rid in (first_id, second_id)]
        return states == ["mined", "mined"]

    await wait_until(both_mined, 60, "both records to be mined")
    for record_id in (first_id, second_id):
        _, verdict = await node.get(f"{API}/records/{record_id}/verify")
        assert verdict["status"] == "intact", verdict
    _, again = await node.get(f"{API}/diagnoses/{first_id}", headers=node.auth)
    assert again["result"] == first["result"], "the first record must never be edited"
    async with node.session.post(url, json={"smoking": "sometimes"}, headers=node.auth) as response:
        assert response.status == 400 and (await response.json())["error"] == "bad-risk-factor"
    async with node.session.post(f"{node.url}{API}/diagnoses/{'00' * 16}/risk-factors", json={"age": 50},
                                 headers=node.auth) as response:
        assert response.status == 404


async def test_address_allow_list_and_relay_only_node(tmp_path: Path) -> None:
    """A sender address outside allowed_hosts is rejected; a relay-only node refuses series with a reason."""
    data_dir = make_node_dir(tmp_path)
    fenced = {"dicom_port": 0, "allowed_hosts": ["192.0.2.1"]}  # a documentation address: never ours
    async with running_node(data_dir, plugin="none", hospital=fenced) as node:
        port = node.app[HOSPITAL].dicom_port
        assert await asyncio.to_thread(send_over_dicom, port, "MODALITY", build_series(1)) == "rejected"
    open_section = {"dicom_port": 0, "quiet_seconds": 0.5}
    async with running_node(data_dir, plugin="none", hospital=open_section) as node:
        port = node.app[HOSPITAL].dicom_port
        statuses = await asyncio.to_thread(send_over_dicom, port, "MODALITY", build_series(2))
        assert [code for code, _ in statuses] == [0, 0]  # acknowledged: stored durably first
        (entry,) = await recorded_series(node, 1)
        assert entry["outcome"] == "refused" and entry["reason"].startswith("relay-only")
        assert not list(node.app[HOSPITAL].inbox.glob("*/*.dcm"))
