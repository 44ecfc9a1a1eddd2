"""Fusion of per-modality model outputs with risk factors into one assessment.

Pure arithmetic, no I/O. The formulas are in ``docs/DIAGNOSTICS.md`` and the
hand-worked cases in ``tests/unit/test_diagnostics_fusion.py``:

- weight of model m:  w_m = max(AUC_m - 0.5, 0.01) / sum over models (no AUC: 0.01);
- fused logit:        z = sum_m w_m * logit(p_m);
- fused threshold:    t = sigmoid(sum_m w_m * logit(t_m));
- image finding:      affected if sigmoid(z) >= t, else normal (images only:
                      risk factors never change it);
- confidence:         of the image finding, 50 + 50 * (p - t) / (1 - t) when
                      affected, 50 + 50 * (t - p) / t when normal, p = sigmoid(z);
- adjusted:           p_adj = sigmoid(z + risk adjustment) (the risk score);
- risk level:         High if p_adj >= high, Moderate if p_adj >= moderate,
                      else Low, and at least Moderate when the image finding is affected.

Recommendations follow the risk level, the image finding and the modalities:
no screening advice once the images show a finding, the CT-nodule guideline
only when a CT was read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diagnostics.errors import DiagnosisError
from diagnostics.risk import RiskAdjustment, RiskAdjustmentConfig, RiskFactors, compute_risk_adjustment

LABEL_AFFECTED = "affected"
LABEL_NORMAL = "normal"
RISK_LEVELS = ("Low", "Moderate", "High")
PROBABILITY_EPSILON = 1e-6
MIN_MODEL_WEIGHT = 0.01
SCREENING_AGES = (50, 80)

DEFAULT_RECOMMENDATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "High": (
        "Consider prompt review of these images by a radiologist.",
        "Consider further work-up as clinically indicated, for example contrast-enhanced CT "
        "and discussion in a lung multidisciplinary team.",
    ),
    "Moderate": (
        "Consider review of these images by a radiologist.",
        "Consider comparison with prior imaging, or follow-up imaging at an interval set by local guidelines.",
    ),
    "Low": (
        "No further action is suggested by this model; continue care as clinically indicated.",
        "Consider review by a radiologist if clinical suspicion remains.",
    ),
})
SMOKING_CESSATION = "Consider offering smoking-cessation support."
SCREENING_ELIGIBILITY = ("Consider whether the patient is eligible for a low-dose CT "
                         "lung-cancer screening programme.")
CT_NODULE_GUIDELINE = ("For a nodule seen on CT, consider the follow-up intervals of the Fleischner Society "
                       "recommendations for pulmonary nodules.")
RADIOGRAPH_FINDING_CT = "Consider a chest CT to characterise the finding on the radiograph."


def compute_logit(probability: float) -> float:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6] so it stays finite."""
    clipped = min(max(float(probability), PROBABILITY_EPSILON), 1.0 - PROBABILITY_EPSILON)
    return math.log(clipped / (1.0 - clipped))


def compute_sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exponential = math.exp(logit)
    return exponential / (1.0 + exponential)


@dataclass(frozen=True)
class ModelEvidence:
    """One model's output and the figures from its card that fusion needs."""

    modality: str
    probability: float
    threshold: float
    auc: float | None


@dataclass(frozen=True)
class Fusion:
    weights: Mapping[str, float]
    logit: float
    probability: float
    threshold: float


def compute_model_weights(evidence: Sequence[ModelEvidence]) -> dict[str, float]:
    """w_m = max(AUC_m - 0.5, 0.01) (0.01 when the card has no AUC), normalised to sum to 1."""
    if not evidence:
        raise DiagnosisError("no-image", "at least one image is needed for a diagnosis")
    raw = {item.modality: MIN_MODEL_WEIGHT if item.auc is None else max(item.auc - 0.5, MIN_MODEL_WEIGHT)
           for item in evidence}
    total = sum(raw.values())
    return {modality: weight / total for modality, weight in raw.items()}


def compute_fusion(evidence: Sequence[ModelEvidence]) -> Fusion:
    """Weighted mean of the models' logits and of their thresholds' logits."""
    weights = compute_model_weights(evidence)
    fused_logit = sum(weights[item.modality] * compute_logit(item.probability) for item in evidence)
    threshold_logit = sum(weights[item.modality] * compute_logit(item.threshold) for item in evidence)
    return Fusion(weights=weights, logit=fused_logit, probability=compute_sigmoid(fused_logit),
                  threshold=compute_sigmoid(threshold_logit))


def compute_confidence(probability: float, threshold: float) -> float:
    """0..100: 50 at the threshold, 100 at probability 0 or 1 (on the side of the label)."""
    margin = (probability - threshold) / (1.0 - threshold) if probability >= threshold else (threshold - probability) / threshold
    return 50.0 + 50.0 * min(max(margin, 0.0), 1.0)


@dataclass(frozen=True)
class RiskLevelConfig:
    """Adjusted-probability cut-offs for the risk level."""

    high: float = 0.7
    moderate: float = 0.4

    def __post_init__(self) -> None:
        if not 0.0 < self.moderate < self.high < 1.0:
            raise DiagnosisError("bad-config", f"risk_levels need 0 < moderate < high < 1, "
                                               f"got moderate={self.moderate}, high={self.high}")


def get_risk_level(probability: float, label: str, config: RiskLevelConfig) -> str:
    if probability >= config.high:
        return "High"
    if probability >= config.moderate or label == LABEL_AFFECTED:
        return "Moderate"
    return "Low"


def get_recommendations(level: str, risk: RiskFactors, per_level: Mapping[str, Sequence[str]],
                        label: str = LABEL_NORMAL, modalities: Sequence[str] = ()) -> tuple[str, ...]:
    """The level's suggestions, then those that follow from the finding, the modalities and the risk factors.

    Screening is for people without a finding, so it is never suggested after the
    images show one; the CT-nodule guideline only applies when a CT was read.
    """
    suggestions = list(per_level[level])
    if label == LABEL_AFFECTED:
        suggestions.append(CT_NODULE_GUIDELINE if "ct" in modalities else RADIOGRAPH_FINDING_CT)
    if risk.smoking == "current":
        suggestions.append(SMOKING_CESSATION)
    low_age, high_age = SCREENING_AGES
    eligible_age = risk.age is not None and low_age <= risk.age <= high_age
    if label != LABEL_AFFECTED and risk.smoking in ("current", "former") and eligible_age:
        suggestions.append(SCREENING_ELIGIBILITY)
    return tuple(suggestions)


@dataclass(frozen=True)
class DiagnosisConfig:
    """Fusion and reporting settings; build from the node's options with :meth:`from_options`."""

    risk_levels: RiskLevelConfig = field(default_factory=RiskLevelConfig)
    risk_adjustment: RiskAdjustmentConfig = field(default_factory=RiskAdjustmentConfig)
    recommendations: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_RECOMMENDATIONS)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DiagnosisConfig:
        levels = dict(options.get("risk_levels") or {})
        unknown = set(levels) - {"high", "moderate"}
        if unknown:
            raise DiagnosisError("bad-config", f"risk_levels: unknown key(s) {sorted(unknown)}")
        recommendations = dict(DEFAULT_RECOMMENDATIONS)
        for level, texts in dict(options.get("recommendations") or {}).items():
            if level not in RISK_LEVELS or isinstance(texts, str):
                raise DiagnosisError("bad-config", f"recommendations: expected a list of strings per level "
                                                   f"{RISK_LEVELS}, got {level!r}")
            recommendations[level] = tuple(str(text) for text in texts)
        return cls(risk_levels=RiskLevelConfig(**{key: float(value) for key, value in levels.items()}),
                   risk_adjustment=RiskAdjustmentConfig.from_options(options.get("risk_adjustment")),
                   recommendations=MappingProxyType(recommendations))


@dataclass(frozen=True)
class Assessment:
    """``label`` and ``confidence`` describe the images alone; ``adjusted_probability`` and
    ``risk_level`` add the risk factors."""

    fusion: Fusion
    adjustment: RiskAdjustment
    adjusted_probability: float
    label: str
    confidence: float
    risk_level: str
    recommendations: tuple[str, ...]


def compute_assessment(evidence: Sequence[ModelEvidence], risk: RiskFactors,
                       config: DiagnosisConfig) -> Assessment:
    """Fuse the models and label from the images alone; then apply the risk factors to grade and suggest."""
    fusion = compute_fusion(evidence)
    label = LABEL_AFFECTED if fusion.probability >= fusion.threshold else LABEL_NORMAL
    adjustment = compute_risk_adjustment(risk, config.risk_adjustment)
    adjusted = compute_sigmoid(fusion.logit + adjustment.total)
    level = get_risk_level(adjusted, label, config.risk_levels)
    modalities = [item.modality for item in evidence]
    return Assessment(fusion=fusion, adjustment=adjustment, adjusted_probability=adjusted, label=label,
                      confidence=compute_confidence(fusion.probability, fusion.threshold), risk_level=level,
                      recommendations=get_recommendations(level, risk, config.recommendations, label, modalities))
