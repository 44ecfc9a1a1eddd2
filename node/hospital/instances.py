"""One received DICOM instance: header checks and the few attributes the node uses.

Every refusal is an :class:`InstanceError` with a stable reason code and the
DICOM status the listener answers with (PS3.4 C.4.2.1.4: ``0xA700`` out of
resources, ``0xA900`` data set does not match SOP class, ``0xC000`` cannot
understand). Nothing here decodes pixels except :func:`compute_lung_fraction`,
which callers run off the event loop.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
# SOP classes accepted, and the Modality values each may carry.
ACCEPTED_SOP_CLASSES = {
    CT_IMAGE_STORAGE: frozenset({"CT"}),
    CR_IMAGE_STORAGE: frozenset({"CR"}),
    DX_FOR_PRESENTATION: frozenset({"DX", "CR", "RG", "DR"}),
    DX_FOR_PROCESSING: frozenset({"DX", "CR", "RG", "DR"}),
}
CT_MODALITIES = frozenset({"CT"})

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_NOT_MATCHING = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

LUNG_HU_LOW = -950.0
LUNG_HU_HIGH = -500.0
_AGE = re.compile(r"^(\d{3})([DWMY])$")


class InstanceError(ValueError):
    """An instance is refused; ``code`` is the reason code, ``status`` the DICOM status."""

    def __init__(self, code: str, message: str, status: int = STATUS_CANNOT_UNDERSTAND) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class InstanceInfo:
    """What the node keeps about an instance besides its bytes (patient attributes stay local, off chain)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    patient_id: str
    instance_number: int
    slice_position: float | None  # z of ImagePositionPatient, for ordering
    patient_age_years: int | None
    transfer_syntax_uid: str

    @property
    def is_ct(self) -> bool:
        return self.modality in CT_MODALITIES

    @property
    def plugin_modality(self) -> str:
        return "ct" if self.is_ct else "xray"


def parse_patient_age(text: str | None) -> int | None:
    """DICOM AS ("058Y", "006M") -> whole years; None when absent or unreadable."""
    match = _AGE.match((text or "").strip())
    if match is None:
        return None
    number, unit = int(match.group(1)), match.group(2)
    years = {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}[unit]
    return years if 0 <= years <= 130 else None


def read_instance_info(data: bytes, max_bytes: int) -> InstanceInfo:
    """Parse the header (not the pixels) of a DICOM Part 10 file; raise InstanceError when refused."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if len(data) > max_bytes:
        raise InstanceError("instance-too-large", f"instance is {len(data)} bytes; the limit is {max_bytes}",
                            STATUS_OUT_OF_RESOURCES)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        info = _info_from_dataset(dataset)
        if "PixelData" not in dataset:
            raise InstanceError("no-pixel-data", "the instance has no pixel data (not an image)", STATUS_NOT_MATCHING)
        validate_pixel_data(dataset)
    except InstanceError:
        raise
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, EOFError, OSError, IndexError) as error:
        raise InstanceError("not-dicom", f"not a readable DICOM file: {error}") from error
    return info


def validate_pixel_data(dataset: Any) -> None:
    """Refuse truncated pixel data: uncompressed by its length, compressed by decoding it."""
    syntax = dataset.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        try:
            dataset.pixel_array  # noqa: B018  (decoding is the check)
        except Exception as error:
            raise InstanceError("undecodable-pixels", f"the compressed pixel data cannot be decoded: {error}") from None
        return
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    expected = (int(dataset.Rows) * int(dataset.Columns) * int(getattr(dataset, "SamplesPerPixel", 1))
                * ((int(dataset.BitsAllocated) + 7) // 8) * frames)
    if len(dataset.PixelData) < expected:
        raise InstanceError("truncated", f"pixel data has {len(dataset.PixelData)} bytes; {expected} expected "
                                         "(a truncated file?)")


def _info_from_dataset(dataset: object) -> InstanceInfo:
    meta = getattr(dataset, "file_meta", None)
    sop_class = str(getattr(dataset, "SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", "") or "")
    modality = str(getattr(dataset, "Modality", "") or "").upper()
    allowed = ACCEPTED_SOP_CLASSES.get(sop_class)
    if allowed is None:
        raise InstanceError("unsupported-sop-class", f"SOP class {sop_class or '(none)'} is not CT or a chest "
                                                     "radiograph (CR/DX)", STATUS_NOT_MATCHING)
    if modality not in allowed:
        raise InstanceError("bad-modality", f"Modality {modality or '(none)'} does not match SOP class {sop_class}",
                            STATUS_NOT_MATCHING)
    uids = {name: str(getattr(dataset, name, "") or "") for name in
            ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    missing = [name for name, value in uids.items() if not value]
    if missing:
        raise InstanceError("missing-uid", f"the instance has no {', '.join(missing)}", STATUS_NOT_MATCHING)
    position = getattr(dataset, "ImagePositionPatient", None)
    number = getattr(dataset, "InstanceNumber", None)
    return InstanceInfo(
        sop_class_uid=sop_class, sop_instance_uid=uids["SOPInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"], series_instance_uid=uids["SeriesInstanceUID"],
        modality=modality, patient_id=str(getattr(dataset, "PatientID", "") or ""),
        instance_number=int(number) if number is not None and number != "" else 0,
        slice_position=float(position[2]) if position is not None and len(position) == 3 else None,
        patient_age_years=parse_patient_age(getattr(dataset, "PatientAge", None)),
        transfer_syntax_uid=str(getattr(meta, "TransferSyntaxUID", "") or ""),
    )


def compute_lung_fraction(data: bytes) -> float:
    """Share of a CT slice's pixels in the lung range [-950, -500] HU (decodes pixels: run off the loop)."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data))
    stored = dataset.pixel_array.astype(np.float32)
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    hounsfield = stored * slope + intercept
    return float(np.count_nonzero((hounsfield >= LUNG_HU_LOW) & (hounsfield <= LUNG_HU_HIGH)) / hounsfield.size)
