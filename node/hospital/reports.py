"""Results back to the PACS: a Comprehensive SR and a heatmap Secondary Capture (highdicom).

Both objects join the source study (same StudyInstanceUID and patient module,
taken from the received header, which stays in the hospital's own queue and
never goes on chain) and are built once, when the record is mined, so that a
retried send delivers byte-identical instances with the same UIDs.

The SR's content tree (TID-1500-like, with codes from DCM/LOINC where one
exists and the private scheme ``99LUNGLEDGER`` otherwise) holds the image
finding, the per-modality model probability, the fused and risk-adjusted
probabilities, the risk level, each model's name, version and SHA-256, the
series rule and the slice it picked (an IMAGE reference), the record id,
block height and hash, and the research-use line.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
MANUFACTURER = "LungLedger"
SCHEME = "99LUNGLEDGER"
PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


@dataclass(frozen=True)
class ReportContext:
    """What the reports need from the source header; stored locally in the outbound queue (JSON)."""

    patient: dict[str, str]
    study: dict[str, str]
    series_uid: str
    references: tuple[tuple[str, str], ...]  # (SOP class, SOP instance) of every diagnosed instance
    top_sop_class: str
    top_sop_instance: str
    pixel_spacing: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {"patient": self.patient, "study": self.study, "series_uid": self.series_uid,
                "references": [list(r) for r in self.references], "top_sop_class": self.top_sop_class,
                "top_sop_instance": self.top_sop_instance,
                "pixel_spacing": list(self.pixel_spacing) if self.pixel_spacing else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportContext:
        spacing = data.get("pixel_spacing")
        return cls(dict(data["patient"]), dict(data["study"]), str(data["series_uid"]),
                   tuple((str(a), str(b)) for a, b in data["references"]), str(data["top_sop_class"]),
                   str(data["top_sop_instance"]), (float(spacing[0]), float(spacing[1])) if spacing else None)


def read_report_context(header: Any, references: tuple[tuple[str, str], ...]) -> ReportContext:
    """From a pydicom header (the top slice) and the list of diagnosed instances."""
    spacing = getattr(header, "PixelSpacing", None)
    return ReportContext(
        patient={key: str(getattr(header, key, "") or "") for key in PATIENT_KEYS},
        study={key: str(getattr(header, key, "") or "") for key in STUDY_KEYS},
        series_uid=str(header.SeriesInstanceUID), references=references,
        top_sop_class=str(header.SOPClassUID), top_sop_instance=str(header.SOPInstanceUID),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None)


def _evidence(context: ReportContext) -> list[Any]:
    from pydicom.dataset import Dataset

    items = []
    for sop_class, sop_instance in context.references:
        dataset = Dataset()
        for key, value in {**context.patient, **context.study}.items():
            setattr(dataset, key, value or None)
        dataset.SeriesInstanceUID = context.series_uid
        dataset.SOPClassUID = sop_class
        dataset.SOPInstanceUID = sop_instance
        items.append(dataset)
    return items


def _code(value: str, meaning: str, scheme: str = SCHEME) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value, scheme, meaning)


def _content_items(context: ReportContext, record: Mapping[str, Any]) -> list[Any]:
    from highdicom.sr import ImageContentItem, NumContentItem, TextContentItem

    result = record["result"]
    unit = _code("1", "no units", "UCUM")
    items: list[Any] = [
        TextContentItem(_code("121071", "Finding", "DCM"), str(result["label"]), "CONTAINS"),
        TextContentItem(_code("risk-level", "Risk level"), str(result["risk_level"]), "CONTAINS"),
        NumContentItem(_code("fused-probability", "Fused probability"), float(result["fused_probability"]), unit,
                       relationship_type="CONTAINS"),
        NumContentItem(_code("adjusted-probability", "Risk-adjusted probability"),
                       float(result["adjusted_probability"]), unit, relationship_type="CONTAINS"),
    ]
    for modality, entry in sorted(result["modalities"].items()):
        model = entry["model"]
        items += [
            NumContentItem(_code(f"{modality}-probability", f"{modality.upper()} model probability"),
                           float(entry["probability"]), unit, relationship_type="CONTAINS"),
            TextContentItem(_code(f"{modality}-model", f"{modality.upper()} model"),
                            f"{model['name']} version {model['version']} sha256 {model['sha256']}", "CONTAINS"),
        ]
    series = result.get("series")
    if series:
        items.append(TextContentItem(_code("series-rule", "Series rule"), str(series["rule"])[:1024], "CONTAINS"))
        items.append(NumContentItem(_code("slices-diagnosed", "Slices diagnosed"), float(series["slices_diagnosed"]),
                                    unit, relationship_type="CONTAINS"))
    items.append(ImageContentItem(_code("121112", "Source of Measurement", "DCM"), context.top_sop_class,
                                  context.top_sop_instance, relationship_type="CONTAINS"))
    items += [
        TextContentItem(_code("record-id", "Ledger record id"), str(record["record_id"]), "CONTAINS"),
        TextContentItem(_code("block-height", "Ledger block height"), str(record.get("block_height")), "CONTAINS"),
        TextContentItem(_code("block-hash", "Ledger block hash"), str(record.get("block_hash")), "CONTAINS"),
        TextContentItem(_code("disclaimer", "Research use"), str(result["disclaimer"]), "CONTAINS"),
    ]
    return items


def build_structured_report(context: ReportContext, record: Mapping[str, Any], sop_instance_uid: str,
                            series_uid: str) -> Any:
    """``record``: record_id, block_height, block_hash and the stored ``result``."""
    from highdicom.sr import ComprehensiveSR, ContainerContentItem

    root = ContainerContentItem(_code("18748-4", "Diagnostic imaging report", "LN"))
    root.ContentSequence = _content_items(context, record)  # type: ignore[assignment]  # highdicom accepts a list
    with warnings.catch_warnings():  # single-component PatientName values are common in practice
        warnings.simplefilter("ignore", UserWarning)
        report = ComprehensiveSR(evidence=_evidence(context), content=root, series_instance_uid=series_uid,
                                 series_number=SR_SERIES_NUMBER, sop_instance_uid=sop_instance_uid,
                                 instance_number=1, manufacturer=MANUFACTURER, is_complete=True, is_final=False,
                                 is_verified=False)
    report.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the research-use line has a dash outside Latin-1
    report.SeriesDescription = "LungLedger result (research use only)"
    return report


def render_overlay(image_png: bytes, heatmap_png: bytes, alpha: float = 0.45) -> np.ndarray:
    """The windowed slice in grey with the RGBA heatmap blended over it: an RGB uint8 array."""
    from PIL import Image

    base = Image.open(io.BytesIO(image_png)).convert("RGB")
    heat = Image.open(io.BytesIO(heatmap_png)).convert("RGBA").resize(base.size, Image.Resampling.BILINEAR)
    grey = np.asarray(base, dtype=np.float32)
    colour = np.asarray(heat, dtype=np.float32)
    weight = alpha * colour[..., 3:4] / 255.0
    blended: np.ndarray = np.clip(grey * (1 - weight) + colour[..., :3] * weight, 0, 255).astype(np.uint8)
    return blended


def build_secondary_capture(context: ReportContext, record: Mapping[str, Any], sop_instance_uid: str,
                            series_uid: str) -> Any | None:
    """The heatmap overlay on the picked slice; None when the result carries no displayable picture."""
    from highdicom.sc import SCImage

    result = record["result"]
    entry = next(iter(sorted(result["modalities"].items())))[1]
    if not entry.get("image_png"):
        return None
    pixels = render_overlay(base64.b64decode(entry["image_png"]), base64.b64decode(entry["heatmap_png"]))
    patient, study = context.patient, context.study
    with warnings.catch_warnings():  # single-component PatientName values are common in practice
        warnings.simplefilter("ignore", UserWarning)
        image = SCImage(
            pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
            study_instance_uid=study["StudyInstanceUID"], series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER, sop_instance_uid=sop_instance_uid, instance_number=1,
            manufacturer=MANUFACTURER, patient_id=patient.get("PatientID") or None,
            patient_name=patient.get("PatientName") or None,
            patient_birth_date=patient.get("PatientBirthDate") or None,
            patient_sex=patient.get("PatientSex") or None, accession_number=study.get("AccessionNumber") or None,
            study_id=study.get("StudyID") or None, study_date=study.get("StudyDate") or None,
            study_time=study.get("StudyTime") or None,
            referring_physician_name=study.get("ReferringPhysicianName") or None,
            patient_orientation=("L", "P"))
    image.SpecificCharacterSet = "ISO_IR 192"
    image.Modality = "OT"  # General Series needs one; "other" is what PACS viewers expect for secondary captures
    image.SeriesDescription = "LungLedger heatmap (research use only)"
    image.ImageComments = str(result["disclaimer"])
    return image


def encode_part10(dataset: Any) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_reports(context: ReportContext, record: Mapping[str, Any]) -> list[bytes]:
    """SR (and SC when a picture exists) as DICOM Part 10 bytes, with fresh UIDs."""
    from highdicom import UID

    sr = build_structured_report(context, record, str(UID()), str(UID()))
    outputs = [encode_part10(sr)]
    sc = build_secondary_capture(context, record, str(UID()), str(UID()))
    if sc is not None:
        outputs.append(encode_part10(sc))
    return outputs
