"""A learned input gate on the model's own pooled features (replaces the mid-tone rule).

Two checks, both fitted by ``training.gate`` on training/tuning images only
(never on ``ct_check_lpctdx``) and stored next to the model in ``gate.json``
(its SHA-256 is in the model card):

1. **what is it?** a softmax classifier over the pooled features with three
   classes: ``ct`` (chest CT slices), ``xray`` (chest radiographs) and
   ``other`` (photographs, documents, drawings, other images shipped by Python
   packages, in colour-stripped and cropped variants). ``other`` ->
   ``not-a-chest-image``; the other modality -> ``wrong-modality``.
2. **how far is it from what the model was validated on?** the Mahalanobis
   distance of the pooled features to the model's training images (principal
   subspace plus a residual term, :class:`GaussianDistance`). Beyond
   ``refuse_distance`` the image is refused as ``not-a-chest-image``; beyond
   ``flag_distance`` it is accepted but flagged ``out-of-distribution``
   (scores not validated for images like this). The thresholds come from the
   distances of the training and tuning images (a high quantile, see the card).

Cost per image: one (1280 x 3) and one (1280 x k) product, well under 0.1 ms.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.errors import DiagnosisError
from diagnostics.imaging import ImageError

GATE_FILE = "gate.json"
GATE_CLASSES = ("ct", "xray", "other")
OUT_OF_DISTRIBUTION = "out-of-distribution"
OOD_MESSAGE = "out-of-distribution: scores not validated for images like this"
MAX_GATE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GateDecision:
    """An accepted image: class probabilities, distance and whether it is flagged out-of-distribution."""

    probabilities: Mapping[str, float]
    distance: float
    out_of_distribution: bool

    def to_dict(self) -> dict[str, Any]:
        return {"probabilities": dict(self.probabilities), "distance": self.distance,
                "out_of_distribution": self.out_of_distribution}


@dataclass(frozen=True)
class GaussianDistance:
    """Mahalanobis distance in a principal subspace, plus the residual scaled by the last variance."""

    mean: np.ndarray
    basis: np.ndarray
    variances: np.ndarray

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        centred = np.atleast_2d(np.asarray(pooled, dtype=np.float64)) - self.mean
        projected = centred @ self.basis
        inside = np.sum(projected ** 2 / self.variances, axis=1)
        residual = np.maximum(np.sum(centred ** 2, axis=1) - np.sum(projected ** 2, axis=1), 0.0)
        distance: np.ndarray = np.sqrt(inside + residual / float(self.variances[-1]))
        return distance


@dataclass(frozen=True)
class InputGate:
    modality: str
    weights: np.ndarray  # (C, 3)
    bias: np.ndarray  # (3,)
    distance: GaussianDistance
    flag_distance: float
    refuse_distance: float
    raw: Mapping[str, Any]

    def classify(self, pooled: np.ndarray) -> np.ndarray:
        """Class probabilities (ct, xray, other) per row."""
        logits = np.atleast_2d(np.asarray(pooled, dtype=np.float64)) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return probabilities

    def check(self, pooled: np.ndarray) -> GateDecision:
        """Raise ``not-a-chest-image`` / ``wrong-modality``, or return the decision for an accepted image."""
        probabilities = self.classify(pooled)[0]
        distance = float(self.distance(pooled)[0])
        named = {name: float(value) for name, value in zip(GATE_CLASSES, probabilities, strict=True)}
        predicted = GATE_CLASSES[int(np.argmax(probabilities))]
        if predicted == "other" or distance > self.refuse_distance:
            raise ImageError("not-a-chest-image",
                             f"this does not look like a chest image (gate: {named['other']:.0%} 'other', "
                             f"distance {distance:.1f} to the {self.modality} training images, "
                             f"refused above {self.refuse_distance:.1f})")
        if predicted != self.modality:
            other = "a chest radiograph" if predicted == "xray" else "a CT slice"
            raise ImageError("wrong-modality",
                             f"this looks like {other} ({named[predicted]:.0%}), not a {self.modality} image; "
                             "check the declared modality")
        return GateDecision(named, distance, distance > self.flag_distance)


def parse_gate(data: Mapping[str, Any], modality: str, features: int, source: str = GATE_FILE) -> InputGate:
    """Validate a gate dict; raises ``bad-model-card``."""
    try:
        weights = np.asarray(data["classifier"]["weights"], dtype=np.float64)
        bias = np.asarray(data["classifier"]["bias"], dtype=np.float64)
        classes = tuple(data["classifier"]["classes"])
        gaussian = data["distance"]
        mean = np.asarray(gaussian["mean"], dtype=np.float64)
        basis = np.asarray(gaussian["basis"], dtype=np.float64)
        variances = np.asarray(gaussian["variances"], dtype=np.float64)
        flag, refuse = float(data["flag_distance"]), float(data["refuse_distance"])
        gate_modality = str(data["modality"])
    except (KeyError, TypeError, ValueError) as error:
        raise DiagnosisError("bad-model-card", f"{source}: missing or malformed field ({error!r})") from error
    shapes_ok = (weights.shape == (features, len(GATE_CLASSES)) and bias.shape == (len(GATE_CLASSES),)
                 and mean.shape == (features,) and basis.ndim == 2 and basis.shape[0] == features
                 and variances.shape == (basis.shape[1],) and basis.shape[1] >= 1)
    if classes != GATE_CLASSES or gate_modality != modality or not shapes_ok:
        raise DiagnosisError("bad-model-card", f"{source}: gate for {gate_modality!r} classes {classes} with "
                                               f"shapes {weights.shape}/{basis.shape} does not fit a {modality} "
                                               f"model with {features} features")
    finite = all(np.all(np.isfinite(array)) for array in (weights, bias, mean, basis, variances))
    if not finite or not np.all(variances > 0) or not (0 < flag <= refuse) or not math.isfinite(refuse):
        raise DiagnosisError("bad-model-card", f"{source}: non-finite values or thresholds out of order")
    return InputGate(modality, weights, bias, GaussianDistance(mean, basis, variances), flag, refuse, data)


def load_gate(model_dir: Path, modality: str, features: int, expected_sha256: str | None) -> InputGate:
    """Read ``gate.json`` next to the model; its SHA-256 must match the card's when the card names one."""
    path = Path(model_dir) / GATE_FILE
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DiagnosisError("model-unavailable", f"cannot read {path}: {error}") from error
    if len(content) > MAX_GATE_BYTES:
        raise DiagnosisError("bad-model-card", f"{path} is {len(content)} bytes; limit {MAX_GATE_BYTES}")
    digest = hashlib.sha256(content).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise DiagnosisError("model-mismatch", f"{path} has SHA-256 {digest}, the card says {expected_sha256}")
    try:
        data = json.loads(content)
    except ValueError as error:
        raise DiagnosisError("bad-model-card", f"{path}: not JSON ({error})") from error
    return parse_gate(data, modality, features, str(path))
