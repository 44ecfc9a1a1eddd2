"""The result of one diagnosis, as the node returns it and records it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostics.risk import RiskAdjustment, RiskFactors

DISCLAIMER = "Research use only — not for diagnostic use"
OUT_OF_DISTRIBUTION = "out-of-distribution"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str  # what the record's model id is: the .tflite's SHA-256, or the served id with an adopted head
    head_digest: str | None = None  # an adopted (federated) head, when one is served; None: the built-in head
    base_sha256: str | None = None  # with head_digest: the .tflite's SHA-256

    def to_dict(self) -> dict[str, str]:
        described = {"name": self.name, "version": self.version, "sha256": self.sha256}
        if self.head_digest is not None and self.base_sha256 is not None:  # absent for the built-in head
            described.update(head_digest=self.head_digest, base_sha256=self.base_sha256)
        return described


@dataclass(frozen=True)
class ModalityResult:
    """One image's model output."""

    modality: str
    probability: float
    threshold: float
    weight: float
    model: ModelInfo
    source_format: str
    heatmap_png: bytes  # RGBA colour map with the image's aspect ratio, to stretch over the image
    image_png: bytes | None = None  # the windowed greyscale picture, for DICOM uploads only
    flags: tuple[str, ...] = ()  # e.g. ("out-of-distribution",): accepted, but unlike the validated images
    gate: Mapping[str, Any] | None = None  # the input gate's class probabilities and distance
    cam_grid: tuple[tuple[float, ...], ...] = ()  # per-location logits (7 x 7), for a page to paint itself

    @property
    def out_of_distribution(self) -> bool:
        return OUT_OF_DISTRIBUTION in self.flags

    def to_dict(self) -> dict[str, Any]:
        return {"probability": self.probability, "threshold": self.threshold, "weight": self.weight,
                "model": self.model.to_dict(), "source_format": self.source_format,
                "heatmap_png": _encode_base64(self.heatmap_png),
                "image_png": None if self.image_png is None else _encode_base64(self.image_png),
                "flags": list(self.flags), "out_of_distribution": self.out_of_distribution,
                "gate": None if self.gate is None else dict(self.gate),
                "cam_grid": [list(row) for row in self.cam_grid]}


def _encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class DiagnosisResult:
    """Per-modality outputs, their fusion, the risk adjustment and what it means."""

    plugin: str
    modalities: Mapping[str, ModalityResult]
    fused_probability: float
    fused_threshold: float
    risk_adjustment: RiskAdjustment
    adjusted_probability: float
    label: str
    confidence: float
    risk_level: str
    recommendations: tuple[str, ...]
    risk_factors: RiskFactors
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; heatmaps are base64-encoded PNG."""
        return {
            "plugin": self.plugin,
            "modalities": {name: result.to_dict() for name, result in self.modalities.items()},
            "fused_probability": self.fused_probability,
            "fused_threshold": self.fused_threshold,
            "risk_adjustment": self.risk_adjustment.to_dict(),
            "adjusted_probability": self.adjusted_probability,
            "label": self.label,
            "confidence": self.confidence,
            "risk_level": self.risk_level,
            "recommendations": list(self.recommendations),
            "risk_factors": self.risk_factors.to_dict(),
            "disclaimer": self.disclaimer,
        }
