"""Real DICOM test data: the four CT files in ../shared/data/dicom, and synthetic series built from them.

A synthetic series re-uses the real slices' pixels and headers with new
Study/Series/SOP Instance UIDs, instance numbers and slice positions, so a
series of any length can be sent without copying shared data into the repo.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from tests.conftest import DATA_DIR

DICOM_DIR = DATA_DIR / "dicom"


def real_dicom_files() -> list[Path]:
    return sorted(DICOM_DIR.glob("*.dcm"))


def build_series(count: int, patient_id: str = "LL-TEST-0001", patient_name: str = "Test^Patient",
                 study_uid: str | None = None, series_uid: str | None = None,
                 sources: list[Path] | None = None) -> list[bytes]:
    """``count`` slices cycling over the real files, as one new series (DICOM Part 10 bytes each)."""
    sources = sources or real_dicom_files()
    templates = [pydicom.dcmread(path) for path in sources]
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    outputs = []
    for index in range(count):
        dataset = templates[index % len(templates)].copy()
        sop_uid = generate_uid()
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID = study_uid, series_uid, sop_uid
        dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
        dataset.PatientID, dataset.PatientName = patient_id, patient_name
        dataset.InstanceNumber = index + 1
        position = list(dataset.ImagePositionPatient)
        dataset.ImagePositionPatient = [position[0], position[1], -100.0 - 5.0 * index]
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        outputs.append(buffer.getvalue())
    return outputs


def change_header(data: bytes, **attributes: object) -> bytes:
    """A copy of an instance with some attributes replaced (e.g. Modality="MR")."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    for name, value in attributes.items():
        setattr(dataset, name, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
