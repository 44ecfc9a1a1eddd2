"""OpenAPI path items of the hospital routes, merged into the node's document (node/openapi.py)."""

from __future__ import annotations

from typing import Any

HEX32 = "^[0-9a-f]{32}$"
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_TEXT = {400: "Bad request", 401: "Missing or wrong API token", 404: "Not found",
              409: "The models that made the record are not loaded", 413: "Series too large",
              415: "Not multipart/related", 422: "Refused (reason code in error)",
              503: "Relay-only node (no diagnostic plug-in)"}
RECORD_ID = {"name": "record_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": HEX32}}
OBJECT = {"type": "object"}


def _json(schema: dict[str, Any], description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ERROR, ERROR_TEXT[status]) for status in statuses}


def hospital_paths() -> dict[str, Any]:
    token: dict[str, Any] = {"security": [{"bearer": []}]}
    stow_reply = {"type": "object", "required": ["instances", "series"],
                  "properties": {"instances": {"type": "array"}, "series": {"type": "array"}}}
    return {
        "/api/v1/studies": {"post": {
            **token, "summary": "STOW-RS style: one series as multipart/related; type=application/dicom "
                                "(one DICOM file per part); diagnosed and recorded at once (docs/INTEGRATION.md)",
            "responses": {"200": _json(stow_reply, "Per-instance and per-series outcomes"),
                          "422": {"description": "Nothing usable, or no series recorded",
                                  "content": {"application/json": {"schema": {"anyOf": [ERROR, stow_reply]}}}},
                          **_errors(400, 401, 413, 415, 503)}}},
        "/api/v1/diagnoses/{record_id}/fhir": {"get": {
            **token, "summary": "The diagnosis as a FHIR R4 Bundle (DiagnosticReport, Observations, ImagingStudy)",
            "parameters": [RECORD_ID],
            "responses": {"200": _json({"type": "object", "required": ["resourceType"]}, "FHIR Bundle",
                                       "application/fhir+json"), **_errors(400, 401, 404)}}},
        "/api/v1/diagnoses/{record_id}/risk-factors": {"post": {
            **token, "summary": "Risk factors learnt later: a new signed record referencing the first",
            "parameters": [RECORD_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"age": {"type": ["integer", "string"]},
                                                 "smoking": {"enum": ["never", "former", "current"]},
                                                 "family_history": {"type": ["boolean", "string"]}}}}}},
            "responses": {"202": _json({"type": "object", "required": ["record_id", "amends", "result"]},
                                       "The new record"), **_errors(400, 401, 404, 409, 422, 503)}}},
        "/api/v1/hospital": {"get": {
            **token, "summary": "DICOM listener, report queue and recent series",
            "responses": {"200": _json(OBJECT, "Hospital integration status"), **_errors(401)}}},
    }
