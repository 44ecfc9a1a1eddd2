"""Unit tests of the hospital integration's pure parts: config, instance checks, series assembly, FHIR, SR.

Plan:
1. Config: defaults, unknown keys and bad AE titles refused with a reason.
2. Instances: the real CT files parse (age, UIDs, position); not-DICOM, an MR object,
   an unsupported SOP class, missing pixels and truncated pixels are refused with the
   right reason code and DICOM status; PatientAge forms.
3. Series assembly: grouping by series, quiet time, duplicates kept once, another
   patient's instance refused, an over-long series refused as a whole, radiographs
   complete on arrival, slices ordered by position.
4. Lung check: the real slices contain lung; a slice of soft tissue only does not.
5. FHIR: a Bundle from stored details validates; an invalid one is refused.
6. SR: the content items carry the record's values and the research-use line.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from node.hospital.config import HospitalConfig, HospitalConfigError
from node.hospital.fhir import FhirError, build_bundle, validate_bundle
from node.hospital.instances import (
    STATUS_NOT_MATCHING,
    STATUS_OUT_OF_RESOURCES,
    InstanceError,
    compute_lung_fraction,
    parse_patient_age,
    read_instance_info,
)
from node.hospital.reports import build_reports, read_report_context
from node.hospital.series import ReceivedInstance, SeriesAssembler
from tests.dicom_builders import build_series, change_header, real_dicom_files

LIMIT = 32 * 1024 * 1024


def test_config_defaults_and_refusals() -> None:
    config = HospitalConfig.from_mapping({})
    assert config.dicom_port is None and config.allowed_hosts == ("127.0.0.1", "::1")
    with pytest.raises(HospitalConfigError, match="unknown hospital config key"):
        HospitalConfig.from_mapping({"ae_tilte": "X"})
    with pytest.raises(HospitalConfigError, match="AE title"):
        HospitalConfig.from_mapping({"ae_title": "A-TITLE-LONGER-THAN-16"})
    with pytest.raises(HospitalConfigError, match="destination"):
        HospitalConfig.from_mapping({"destination": {"ae_title": "PACS"}})
    parsed = HospitalConfig.from_mapping({"destination": {"ae_title": "PACS", "host": "h", "port": "104"}})
    assert parsed.destination is not None and parsed.destination.port == 104


def test_real_ct_files_parse() -> None:
    info = read_instance_info(real_dicom_files()[0].read_bytes(), LIMIT)
    assert info.is_ct and info.plugin_modality == "ct" and info.patient_age_years == 58
    assert info.instance_number == 13 and info.slice_position == pytest.approx(-184.0)


@pytest.mark.parametrize(("text", "years"), [("058Y", 58), ("006M", 0), ("030M", 2), ("104W", 2), ("", None),
                                             ("58", None), ("999Y", None), (None, None)])
def test_patient_age(text: str | None, years: int | None) -> None:
    assert parse_patient_age(text) == years


def refusal(data: bytes, limit: int = LIMIT) -> InstanceError:
    with pytest.raises(InstanceError) as caught:
        read_instance_info(data, limit)
    return caught.value


def test_bad_instances_are_refused_with_reason_and_status() -> None:
    good = real_dicom_files()[0].read_bytes()
    assert refusal(b"not dicom at all" * 20).code == "not-dicom"
    assert refusal(good[:1000]).code in ("not-dicom", "truncated")
    assert refusal(good[:300_000]).code == "truncated"
    mr = refusal(change_header(good, Modality="MR"))
    assert (mr.code, mr.status) == ("bad-modality", STATUS_NOT_MATCHING)
    other = refusal(change_header(good, SOPClassUID="1.2.840.10008.5.1.4.1.1.4"))  # MR Image Storage
    assert other.code == "unsupported-sop-class"
    dataset = pydicom.dcmread(io.BytesIO(good))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    assert refusal(buffer.getvalue()).code == "no-pixel-data"
    large = refusal(good, limit=1000)
    assert (large.code, large.status) == ("instance-too-large", STATUS_OUT_OF_RESOURCES)


def received(data: bytes, tmp_path: Path, name: str) -> ReceivedInstance:
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    return ReceivedInstance(read_instance_info(data, LIMIT), path)


def test_series_assembly(tmp_path: Path) -> None:
    assembler = SeriesAssembler(quiet_seconds=10.0, max_instances=5)
    first = [received(d, tmp_path, f"a{i}") for i, d in enumerate(build_series(4, patient_id="P1"))]
    second = [received(d, tmp_path, f"b{i}") for i, d in enumerate(build_series(2, patient_id="P2"))]
    for item in reversed(first):  # arrival order does not matter
        assembler.add(item, now=0.0)
    assembler.add(first[0], now=1.0)  # a re-send: kept once
    for item in second:
        assembler.add(item, now=5.0)
    stranger = received(change_header(build_series(1, patient_id="P9")[0],
                                      SeriesInstanceUID=first[0].info.series_instance_uid), tmp_path, "c")
    with pytest.raises(InstanceError) as caught:
        assembler.add(stranger, now=2.0)
    assert caught.value.code == "patient-mismatch"
    assert assembler.next_deadline() == pytest.approx(12.0)
    assert assembler.take_complete(now=11.9) == []
    (done,) = assembler.take_complete(now=12.0)
    # ordered by slice position (z ascending: this series runs downwards as instance numbers rise)
    assert [i.info.instance_number for i in done.instances] == [4, 3, 2, 1] and done.refused_count == 1
    assert done.refusal is None
    (rest,) = assembler.take_complete(now=0.0, flush=True)
    assert len(rest.instances) == 2


def test_over_long_series_is_refused_whole_and_radiograph_is_immediate(tmp_path: Path) -> None:
    assembler = SeriesAssembler(quiet_seconds=1.0, max_instances=3)
    items = [received(d, tmp_path, f"s{i}") for i, d in enumerate(build_series(5))]
    for item in items[:3]:
        assembler.add(item, now=0.0)
    for item in items[3:]:
        with pytest.raises(InstanceError) as caught:
            assembler.add(item, now=0.0)
        assert caught.value.code == "series-too-large" and caught.value.status == STATUS_OUT_OF_RESOURCES
    (series,) = assembler.take_complete(now=5.0)
    assert series.refusal is not None and series.refusal.startswith("series-too-large")
    xray = received(change_header(build_series(1)[0], SOPClassUID="1.2.840.10008.5.1.4.1.1.1", Modality="CR"),
                    tmp_path, "x")
    assembler.add(xray, now=0.0)
    (ready,) = assembler.take_complete(now=0.0)
    assert ready.modality == "CR" and len(ready.instances) == 1


def test_lung_check() -> None:
    data = real_dicom_files()[0].read_bytes()
    assert compute_lung_fraction(data) > 0.10
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.PixelData = np.full((dataset.Rows, dataset.Columns), 1064, dtype=np.uint16).tobytes()  # 40 HU
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    assert compute_lung_fraction(buffer.getvalue()) == 0.0


def sample_details() -> dict:
    header = pydicom.dcmread(real_dicom_files()[0], stop_before_pixels=True)
    result = {
        "modalities": {"ct": {"probability": 0.81, "model": {"name": "ct-mobilenetv2", "version": "3",
                                                              "sha256": "ab" * 32}, "heatmap_png": "", "image_png": None}},
        "fused_probability": 0.81, "adjusted_probability": 0.84, "label": "affected", "risk_level": "High",
        "disclaimer": "Research use only — not for diagnostic use",
        "series": {"rule": "highest", "slices_diagnosed": 4},
        "dicom": {"study_instance_uid": str(header.StudyInstanceUID), "series_instance_uid": str(header.SeriesInstanceUID),
                  "sop_instance_uid": str(header.SOPInstanceUID), "sop_class_uid": str(header.SOPClassUID),
                  "modality": "CT"},
    }
    return {"commitment": {"patient_pseudonym": "cd" * 32}, "result": result}


def test_fhir_bundle_validates_and_invalid_is_refused() -> None:
    bundle = build_bundle("ef" * 16, sample_details(), (7, "12" * 32))
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds[0] == "DiagnosticReport" and kinds.count("Observation") == 5 and "ImagingStudy" in kinds
    assert bundle["entry"][0]["resource"]["status"] == "final"
    pending = build_bundle("ef" * 16, sample_details(), None)
    assert pending["entry"][0]["resource"]["status"] == "preliminary"
    broken = copy.deepcopy(bundle)
    del broken["entry"][0]["resource"]["status"]  # required in a DiagnosticReport
    with pytest.raises(FhirError, match="status"):
        validate_bundle(broken)
    broken = copy.deepcopy(bundle)
    broken["entry"][1]["resource"]["valueString"] = {"not": "a string"}
    with pytest.raises(FhirError):
        validate_bundle(broken)


def test_structured_report_content() -> None:
    header = pydicom.dcmread(real_dicom_files()[0], stop_before_pixels=True)
    context = read_report_context(header, ((str(header.SOPClassUID), str(header.SOPInstanceUID)),))
    record = {"record_id": "ef" * 16, "block_height": 7, "block_hash": "12" * 32, "result": sample_details()["result"]}
    (sr_bytes,) = build_reports(context, record)  # no picture in this result: SR only
    sr = pydicom.dcmread(io.BytesIO(sr_bytes))
    values = {item.ConceptNameCodeSequence[0].CodeMeaning: item.get("TextValue") for item in sr.ContentSequence}
    assert values["Finding"] == "affected" and values["Ledger block height"] == "7"
    assert values["Research use"] == "Research use only — not for diagnostic use"
    assert sr.StudyInstanceUID == header.StudyInstanceUID and sr.PatientID == header.PatientID
