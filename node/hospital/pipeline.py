"""Diagnosing a complete series with the node's diagnostic plug-in, and the series rule.

Series rule (CT): every slice is checked for lung (share of pixels in
[-950, -500] HU at least ``lung_min_fraction``); the slices with lung are
diagnosed one by one through the plug-in's public ``diagnose_async`` (which
runs decoding and inference off the event loop and batches concurrent
slices into one model call); the series result is the result of the slice
with the highest CT model probability, and its heatmap is shown on that
slice. Slices the plug-in refuses (for example its plausibility check) are
counted by reason and left out. A radiograph is diagnosed as one instance.

The risk factors known at this point are the patient's age from the DICOM
header (PatientAge); smoking and family history are recorded as unknown.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from diagnostics.errors import DiagnosisError
from diagnostics.plugin import DiagnosticPlugin
from diagnostics.result import DiagnosisResult
from diagnostics.risk import RiskFactors
from node.hospital.instances import compute_lung_fraction
from node.hospital.series import CompleteSeries, ReceivedInstance

MAX_SLICES_IN_FLIGHT = 16
SERIES_RULE = ("highest CT model probability among the slices that contain lung (at least {fraction:.0%} of "
               "pixels in [-950, -500] HU); the heatmap is on that slice")
XRAY_RULE = "radiograph: diagnosed as one instance"


class SeriesRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SeriesDiagnosis:
    result: dict[str, Any]  # the top slice's DiagnosisResult.to_dict() plus "series" and "dicom" sections
    modality: str  # the plug-in's modality key: "ct" or "xray"
    top: ReceivedInstance
    top_bytes: bytes
    diagnosed: tuple[ReceivedInstance, ...]


@dataclass
class _Best:
    result: DiagnosisResult | None = None
    instance: ReceivedInstance | None = None
    data: bytes = b""


def _read(item: ReceivedInstance) -> bytes:
    return item.path.read_bytes()


def _read_and_measure(item: ReceivedInstance) -> tuple[bytes, float]:
    data = item.path.read_bytes()
    return data, compute_lung_fraction(data)


async def diagnose_series(plugin: DiagnosticPlugin, series: CompleteSeries, lung_min_fraction: float) -> SeriesDiagnosis:
    if series.refusal is not None:
        code, _, message = series.refusal.partition(": ")
        raise SeriesRefused(code, message or code)
    risk = RiskFactors(age=series.first.patient_age_years)
    if series.first.is_ct:
        return await _diagnose_ct(plugin, series, risk, lung_min_fraction)
    item = series.instances[0]
    data = await asyncio.to_thread(_read, item)
    try:
        result = await plugin.diagnose_async({"xray": data}, risk)
    except DiagnosisError as error:
        raise SeriesRefused(error.code, error.message) from None
    summary = {"rule": XRAY_RULE, "instances_received": 1, "slices_with_lung": None, "slices_diagnosed": 1,
               "slices_refused": {}, "top_slice": _slice_json(item, result.modalities["xray"].probability),
               "slice_probabilities": []}
    return SeriesDiagnosis(_with_sections(result, summary, item), "xray", item, data, (item,))


async def _diagnose_ct(plugin: DiagnosticPlugin, series: CompleteSeries, risk: RiskFactors,
                       lung_min_fraction: float) -> SeriesDiagnosis:
    slots = asyncio.Semaphore(MAX_SLICES_IN_FLIGHT)
    best = _Best()
    refused: Counter[str] = Counter()
    probabilities: dict[str, float] = {}

    async def one(item: ReceivedInstance) -> None:
        async with slots:
            try:
                data, fraction = await asyncio.to_thread(_read_and_measure, item)
            except (OSError, ValueError, TypeError, AttributeError) as error:
                refused[f"undecodable: {type(error).__name__}"] += 1
                return
            if fraction < lung_min_fraction:
                refused["no-lung"] += 1
                return
            try:
                result = await plugin.diagnose_async({"ct": data}, risk)
            except DiagnosisError as error:
                refused[error.code] += 1
                return
        probability = result.modalities["ct"].probability
        probabilities[item.info.sop_instance_uid] = probability
        if best.result is None or probability > best.result.modalities["ct"].probability:
            best.result, best.instance, best.data = result, item, data

    await asyncio.gather(*(one(item) for item in series.instances))
    if best.result is None or best.instance is None:
        raise SeriesRefused("no-lung-slices", f"none of the {len(series.instances)} slices could be diagnosed "
                                              f"(refused: {dict(refused)})")
    diagnosed = tuple(item for item in series.instances if item.info.sop_instance_uid in probabilities)
    summary = {
        "rule": SERIES_RULE.format(fraction=lung_min_fraction),
        "instances_received": len(series.instances) + series.refused_count,
        "slices_with_lung": len(series.instances) - refused["no-lung"],
        "slices_diagnosed": len(diagnosed),
        "slices_refused": dict(refused),
        "top_slice": _slice_json(best.instance, best.result.modalities["ct"].probability),
        "slice_probabilities": [[item.info.instance_number, round(probabilities[item.info.sop_instance_uid], 6)]
                                for item in diagnosed],
    }
    return SeriesDiagnosis(_with_sections(best.result, summary, best.instance), "ct", best.instance, best.data,
                           diagnosed)


def _slice_json(item: ReceivedInstance, probability: float) -> dict[str, Any]:
    return {"instance_number": item.info.instance_number, "slice_position": item.info.slice_position,
            "probability": probability}


def _with_sections(result: DiagnosisResult, summary: dict[str, Any], top: ReceivedInstance) -> dict[str, Any]:
    """The plug-in's result plus the series summary and the DICOM references (no patient attribute)."""
    info = top.info
    return {**result.to_dict(), "series": summary,
            "dicom": {"study_instance_uid": info.study_instance_uid, "series_instance_uid": info.series_instance_uid,
                      "sop_instance_uid": info.sop_instance_uid, "sop_class_uid": info.sop_class_uid,
                      "modality": info.modality}}
