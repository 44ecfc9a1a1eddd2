"""A diagnosis as a FHIR R4 Bundle for the EHR: DiagnosticReport + Observations + ImagingStudy.

Mapping (see docs/INTEGRATION.md):

- ``DiagnosticReport``: status ``final`` once the record is mined, else
  ``preliminary``; code LOINC 18748-4 "Diagnostic imaging study"; conclusion =
  label, risk level and the research-use line; identifier = the ledger record
  id (``urn:lungledger:record``) and, when mined, the block hash; ``result`` ->
  the Observations; ``imagingStudy`` -> the ImagingStudy.
- ``Observation`` per model probability, the fused and the risk-adjusted
  probability (valueQuantity, UCUM ``1``), the image finding and the risk
  level (valueString); each carries the model name/version/SHA-256 in ``method``
  and ``note``.
- ``ImagingStudy``: identified by the DICOM StudyInstanceUID
  (``urn:dicom:uid``, value ``urn:oid:<uid>``), with the series and instance
  that gave the result.
- ``subject``: the node's keyed patient pseudonym (system
  ``urn:lungledger:patient-pseudonym``), never the clear PatientID; the EHR
  links the report to its patient through the ImagingStudy / accession.

The Bundle is validated with ``fhir.resources`` (its R4B models: FHIR 4.3,
which keeps R4's structure for these four resources) before it is returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RECORD_SYSTEM = "urn:lungledger:record"
BLOCK_SYSTEM = "urn:lungledger:block-hash"
PSEUDONYM_SYSTEM = "urn:lungledger:patient-pseudonym"
CODE_SYSTEM = "urn:lungledger:codes"
DICOM_UID_SYSTEM = "urn:dicom:uid"
DICOM_MODALITY_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"


class FhirError(ValueError):
    """The Bundle failed validation (a bug: it is built from our own record)."""


def _code(code: str, display: str, system: str = CODE_SYSTEM) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _observation(code: str, display: str, value: Any, subject: dict[str, Any], status: str,
                 method: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": status,
                                "code": _code(code, display), "subject": subject}
    if isinstance(value, float):
        resource["valueQuantity"] = {"value": round(value, 6), "unit": "1", "system": UCUM, "code": "1"}
    else:
        resource["valueString"] = str(value)
    if method:
        resource["method"] = {"text": method}
    return resource


def build_bundle(record_id: str, details: Mapping[str, Any], block: tuple[int, str] | None) -> dict[str, Any]:
    """``details``: the stored off-chain details of our record; ``block``: (height, hash) when mined."""
    result = details["result"]
    pseudonym = details["commitment"].get("patient_pseudonym")
    subject: dict[str, Any] = ({"identifier": {"system": PSEUDONYM_SYSTEM, "value": pseudonym}} if pseudonym
               else {"display": "patient not identified in the upload"})
    status = "final" if block is not None else "preliminary"
    observations = [
        _observation("finding", "Image finding", str(result["label"]), subject, status),
        _observation("risk-level", "Risk level", str(result["risk_level"]), subject, status),
        _observation("fused-probability", "Fused probability", float(result["fused_probability"]), subject, status),
        _observation("adjusted-probability", "Risk-adjusted probability", float(result["adjusted_probability"]),
                     subject, status),
    ]
    for modality, entry in sorted(result["modalities"].items()):
        model = entry["model"]
        observations.append(_observation(f"{modality}-probability", f"{modality.upper()} model probability",
                                         float(entry["probability"]), subject, status,
                                         f"{model['name']} {model['version']} sha256:{model['sha256']}"))
    for observation in observations:
        observation["note"] = [{"text": str(result["disclaimer"])}]
    entries = [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in observations]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": str(uuid.uuid4()), "status": status,
        "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        "subject": subject,
        "identifier": [{"system": RECORD_SYSTEM, "value": record_id}]
        + ([{"system": BLOCK_SYSTEM, "value": f"{block[0]}:{block[1]}"}] if block else []),
        "result": [{"reference": entry["fullUrl"]} for entry in entries],
        "conclusion": f"{result['label']}, risk level {result['risk_level']}. {result['disclaimer']}",
    }
    dicom = result.get("dicom")
    if dicom:
        study = _imaging_study(dicom, subject)
        entries.append({"fullUrl": f"urn:uuid:{study['id']}", "resource": study})
        report["imagingStudy"] = [{"reference": f"urn:uuid:{study['id']}"}]
    entries.insert(0, {"fullUrl": f"urn:uuid:{report['id']}", "resource": report})
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "entry": entries}
    return validate_bundle(bundle)


def _imaging_study(dicom: Mapping[str, Any], subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy", "id": str(uuid.uuid4()), "status": "available", "subject": subject,
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{dicom['study_instance_uid']}"}],
        "series": [{
            "uid": dicom["series_instance_uid"],
            "modality": {"system": DICOM_MODALITY_SYSTEM, "code": dicom["modality"]},
            "instance": [{"uid": dicom["sop_instance_uid"],
                          "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{dicom['sop_class_uid']}"}}],
        }],
    }


def validate_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Parse with fhir.resources (raises FhirError when invalid); returns the JSON form."""
    import json

    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        parsed = Bundle.model_validate(bundle)
    except ValidationError as error:
        raise FhirError(f"the FHIR Bundle is invalid: {error}") from error
    return dict(json.loads(parsed.model_dump_json(exclude_none=True)))
