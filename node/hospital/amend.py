"""Risk factors added after the fact: a new signed record that references the first, never an edit.

A series diagnosed from the PACS knows only the patient's age. When smoking
status or family history become known, ``POST /api/v1/diagnoses/{id}/risk-factors``
re-runs the *assessment* (fusion, risk adjustment, label, risk level,
recommendations; :func:`diagnostics.fusion.compute_assessment`) on the first
record's stored model probabilities: the image finding is the images' and is
not recomputed; the models must be the ones that made the first record.

The new record goes through the same signing path as every diagnosis
(:func:`node.records.build_record`). Its result carries
``amends = {record_id, patient_pseudonym}`` (committed on chain through the
result digest). The images are not held any more (deleted after diagnosis), so
the new record's image digest is the keyed digest of the first record's image
digest: it points at the same image without the image.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from diagnostics.errors import DiagnosisError
from diagnostics.fusion import DiagnosisConfig, ModelEvidence, compute_assessment
from diagnostics.risk import RiskFactors


class AmendError(ValueError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def merge_risk_factors(original: Mapping[str, Any], update: Mapping[str, Any]) -> RiskFactors:
    """Known factors of the first record, overridden by the new ones (which are validated)."""
    if not isinstance(update, Mapping) or not update:
        raise AmendError(400, "bad-risk-factor", "send a JSON object with age, smoking and/or family_history")
    try:
        given = RiskFactors.from_mapping(update)
        before = RiskFactors.from_mapping({k: v for k, v in original.items() if v is not None})
    except DiagnosisError as error:
        raise AmendError(400, error.code, error.message) from None
    return RiskFactors(age=given.age if "age" in update else before.age,
                       smoking=given.smoking if "smoking" in update else before.smoking,
                       family_history=given.family_history if "family_history" in update else before.family_history)


def build_amended_result(record_id: str, details: Mapping[str, Any], update: Mapping[str, Any],
                         plugin_info: Mapping[str, Any], plugin_options: Mapping[str, Any]) -> dict[str, Any]:
    """The first record's result re-assessed with the merged risk factors, marked as amending it."""
    result = copy.deepcopy(dict(details["result"]))
    risk = merge_risk_factors(result.get("risk_factors") or {}, update)
    evidence = []
    for modality, entry in sorted(result["modalities"].items()):
        model = plugin_info.get("models", {}).get(modality)
        # with an adopted federated head, the record names the served id (docs/FEDERATED.md)
        loaded = None if model is None else model.get("served_model_id") or model.get("sha256")
        if loaded is None or loaded != entry["model"]["sha256"]:
            raise AmendError(409, "model-changed", f"the {modality} model that made record {record_id} is not the "
                                                   "one loaded now; its assessment cannot be redone here")
        auc = (model.get("validation") or {}).get("auc")
        evidence.append(ModelEvidence(modality, float(entry["probability"]), float(entry["threshold"]),
                                      None if auc is None else float(auc)))
    try:
        assessment = compute_assessment(evidence, risk, DiagnosisConfig.from_options(plugin_options))
    except DiagnosisError as error:
        raise AmendError(400, error.code, error.message) from None
    result.update(risk_factors=risk.to_dict(), risk_adjustment=assessment.adjustment.to_dict(),
                  adjusted_probability=assessment.adjusted_probability, label=assessment.label,
                  confidence=assessment.confidence, risk_level=assessment.risk_level,
                  recommendations=list(assessment.recommendations),
                  amends={"record_id": record_id,
                          "patient_pseudonym": details["commitment"].get("patient_pseudonym")})
    return result


def get_amended_images(details: Mapping[str, Any]) -> dict[str, bytes]:
    """Per modality, the first record's image digest (bytes), to be digested again under the node's key."""
    return {modality: bytes.fromhex(entry["digest"]) for modality, entry in details["images"].items()}
