"""The OpenAPI 3 document of the node's HTTP API, served at /api/v1/openapi.json.

Written by hand next to the routes in ``node/api.py`` (the schemathesis test
drives the running node from this document, so drift shows up as a failure).
"""

from __future__ import annotations

from typing import Any

from node.hospital.openapi import hospital_paths
from node.openapi_accounts import ACCOUNT_PATHS, SESSION_SCHEME

HEX32 = "^[0-9a-f]{32}$"
HEX64 = "^[0-9a-f]{64}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "Missing or wrong API token", 404: "Not found", 413: "Upload too large",
            415: "Unsupported media type", 422: "The image or request was refused (reason code in error)",
            429: "Too many diagnoses in progress", 503: "Relay-only node (no diagnostic plug-in)"}
    return {str(status): _json(_ref("Error"), text[status]) for status in statuses}


HEX_STRING = {"type": "string", "pattern": "^[0-9a-f]*$"}
NULLABLE_HEX = {"type": ["string", "null"], "pattern": "^[0-9a-f]*$"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
    "Status": {"type": "object", "required": ["node_id", "name", "chain_id", "height", "tip_hash", "difficulty",
                                              "peer_count", "pending_records", "equivocations", "version"],
               "properties": {"node_id": HEX_STRING, "name": {"type": "string"}, "chain_id": HEX_STRING,
                              "chain_name": {"type": "string"}, "height": {"type": "integer", "minimum": 0},
                              "tip_hash": HEX_STRING, "tip_time_ms": {"type": "integer"},
                              "difficulty": {"type": "integer"}, "peer_count": {"type": "integer"},
                              "pending_records": {"type": "integer"}, "members": {"type": "array"},
                              "equivocations": {"type": "integer", "minimum": 0,
                                                "description": "equivocation evidence held (/chain/evidence)"},
                              "diagnostics": {"type": ["object", "null"],
                                              "description": "plug-in info (models, versions, sha256); "
                                                             "null on a relay-only node"},
                              "version": {"type": "string"}}},
    "EvidenceBlock": {"type": "object",
                      "required": ["hash", "height", "prev_hash", "timestamp_ms", "on_best_chain", "header_hex",
                                   "signature"],
                      "properties": {"hash": HEX_STRING, "height": {"type": "integer", "minimum": 0},
                                     "prev_hash": HEX_STRING, "timestamp_ms": {"type": "integer"},
                                     "on_best_chain": {"type": "boolean"}, "header_hex": HEX_STRING,
                                     "signature": HEX_STRING}},
    "Evidence": {"type": "object", "required": ["count", "evidence"],
                 "properties": {"count": {"type": "integer", "minimum": 0},
                                "evidence": {"type": "array", "items": {
                                    "type": "object", "required": ["member_id", "member_name", "blocks"],
                                    "properties": {"member_id": HEX_STRING,
                                                   "member_name": {"type": ["string", "null"]},
                                                   "blocks": {"type": "array", "minItems": 2, "maxItems": 2,
                                                              "items": _ref("EvidenceBlock")}}}}}},
    "Block": {"type": "object",
              "required": ["height", "hash", "prev_hash", "merkle_root", "timestamp_ms", "difficulty", "miner_id",
                           "nonce", "record_ids", "header_hex", "on_best_chain", "confirmations", "finality"],
              "properties": {"height": {"type": "integer"}, "hash": HEX_STRING, "prev_hash": HEX_STRING,
                             "next_hash": NULLABLE_HEX, "merkle_root": HEX_STRING,
                             "timestamp_ms": {"type": "integer"}, "difficulty": {"type": "integer"},
                             "miner_id": HEX_STRING, "miner_name": {"type": ["string", "null"]},
                             "nonce": {"type": "integer"}, "version": {"type": "integer"},
                             "chain_work": {"type": "string", "description": "cumulative work, decimal"},
                             "on_best_chain": {"type": "boolean"}, "confirmations": {"type": "integer"},
                             "finality": _ref("Finality"),
                             "signature": HEX_STRING, "size_bytes": {"type": "integer"},
                             "record_count": {"type": "integer"},
                             "record_ids": {"type": "array", "items": HEX_STRING},
                             "entries": {"type": "array", "description": "governance entries (issue 15): kind "
                                         "(round, result, metrics), round id, signer, entry hash",
                                         "items": {"type": "object"}},
                             "header_hex": {"type": "string", "pattern": "^[0-9a-f]+$",
                                            "description": "canonical msgpack header; SHA-256 of it is the hash"}}},
    "BlockList": {"type": "object", "required": ["height", "start", "limit", "blocks"],
                  "properties": {"height": {"type": "integer"}, "start": {"type": "integer"},
                                 "limit": {"type": "integer"}, "blocks": {"type": "array", "items": _ref("Block")}}},
    "Record": {"type": "object",
               "required": ["record_id", "member_id", "created_ms", "modalities", "image_digests", "model_ids",
                            "probabilities_ppm", "fused_ppm", "label", "risk_level", "details_digest", "signature"],
               "properties": {"record_id": HEX_STRING, "member_id": HEX_STRING,
                              "member_name": {"type": ["string", "null"]}, "created_ms": {"type": "integer"},
                              "modalities": {"type": "array", "items": {"enum": ["ct", "xray"]}},
                              "image_digests": {"type": "array", "items": HEX_STRING},
                              "model_ids": {"type": "array", "items": HEX_STRING},
                              "probabilities_ppm": {"type": "array", "items": {"type": "integer"}},
                              "fused_ppm": {"type": "integer"}, "label": {"enum": ["affected", "normal"]},
                              "risk_level": {"enum": ["High", "Moderate", "Low"]}, "details_digest": HEX_STRING,
                              "signature": HEX_STRING, "record_hash": HEX_STRING, "encoded_hex": HEX_STRING}},
    "Finality": {"type": "object", "required": ["final", "distinct_members", "needed"],
                 "description": "final once `needed` (a majority) distinct members mined the block or its "
                                "best-chain descendants (counted up to `needed`); a final block is never reorged",
                 "properties": {"final": {"type": "boolean"}, "distinct_members": {"type": "integer"},
                                "needed": {"type": "integer"}}},
    "ChainPosition": {"type": "object",
                      "required": ["status", "block_height", "block_hash", "confirmations", "finality"],
                      "properties": {"status": {"enum": ["mined", "pending", "not-on-chain"]},
                                     "block_height": {"type": ["integer", "null"]}, "block_hash": NULLABLE_HEX,
                                     "confirmations": {"type": "integer"}, "finality": _ref("Finality")}},
    "RecordOnChain": {"allOf": [_ref("ChainPosition"), {
        "type": "object", "required": ["record"],
        "properties": {"record": _ref("Record"), "position": {"type": "integer"}, "merkle_root": HEX_STRING,
                       "merkle_proof": {"type": "array", "items": {
                           "type": "object", "required": ["side", "hash"],
                           "properties": {"side": {"enum": ["left", "right"]}, "hash": HEX_STRING}}}}}]},
    "RecordVerification": {"type": "object", "required": ["record_id", "status", "reason", "checks"],
                           "properties": {"record_id": HEX_STRING,
                                          "status": {"enum": ["intact", "tampered", "pending", "not-found",
                                                              "no-local-details", "orphaned"]},
                                          "reason": {"type": "string"},
                                          "checks": {"type": "object",
                                                     "additionalProperties": {"type": "boolean"}},
                                          "block_height": {"type": ["integer", "null"]}, "block_hash": NULLABLE_HEX}},
    "ChainVerification": {"type": "object", "required": ["status", "height", "blocks_checked", "first_bad_block"],
                          "properties": {"status": {"enum": ["valid", "invalid"]}, "height": {"type": "integer"},
                                         "blocks_checked": {"type": "integer"},
                                         "records_checked": {"type": "integer"},
                                         "first_bad_block": {"type": ["object", "null"]},
                                         "elapsed_ms": {"type": "number"}}},
    "Federated": {"type": "object", "required": ["enabled", "rounds"],
                  "description": "federated rounds this node has seen (docs/FEDERATED.md)",
                  "properties": {"enabled": {"type": "boolean"}, "modality": {"type": "string"},
                                 "model_id": {"type": "string"}, "head_digest": {"type": "string"},
                                 "served": {"type": ["object", "null"], "description": "the adopted head the "
                                            "plug-in serves (null: the built-in head)",
                                            "properties": {"head_digest": HEX_STRING,
                                                           "served_model_id": HEX_STRING}},
                                 "site_images": {"type": ["integer", "null"]},
                                 "rounds": {"type": "array", "items": {"type": "object"}},
                                 "chain": {"type": "object", "description": "what the best chain says: the "
                                           "adopted head, and each round's block heights and verdict"}}},
    "FederatedHeadSummary": {
        "type": "object", "required": ["digest", "modality", "base_model_id", "served_model_id", "adopted_ms"],
        "properties": {"digest": HEX_STRING, "modality": {"enum": ["ct", "xray"]}, "base_model_id": HEX_STRING,
                       "served_model_id": {**HEX_STRING, "description": "SHA-256(base_model_id || digest): the "
                                                                        "model id a diagnosis record names"},
                       "round_id": NULLABLE_HEX, "adopted_ms": {"type": "integer"}, "features": {"type": "integer"}}},
    "FederatedHeads": {"type": "object", "required": ["heads"],
                       "properties": {"heads": {"type": "array", "items": _ref("FederatedHeadSummary")}}},
    "FederatedHead": {"allOf": [_ref("FederatedHeadSummary"), {
        "type": "object", "required": ["weights", "bias"],
        "properties": {"weights": {"type": "array", "items": {"type": "number"}}, "bias": {"type": "number"},
                       "digest_rule": {"type": "string"}}}]},
    "Peers": {"type": "object", "required": ["count", "peers"],
              "properties": {"count": {"type": "integer"}, "peers": {"type": "array", "items": {"type": "object"}},
                             "bootstrap": {"type": "array", "items": {"type": "string"}}}},
    "DiagnosisResult": {"type": "object", "description": "the plug-in's result (see docs/DIAGNOSTICS.md)",
                        "required": ["modalities", "fused_probability", "adjusted_probability", "label",
                                     "confidence", "risk_level", "recommendations", "disclaimer"],
                        "properties": {"modalities": {"type": "object", "additionalProperties": {
                                           "type": "object",
                                           "properties": {"probability": {"type": "number"},
                                                          "model": {"type": "object"},
                                                          "heatmap_png": {"type": "string",
                                                                          "contentEncoding": "base64"}}}},
                                       "fused_probability": {"type": "number"},
                                       "adjusted_probability": {"type": "number"},
                                       "label": {"enum": ["affected", "normal"]}, "confidence": {"type": "number"},
                                       "risk_level": {"enum": ["High", "Moderate", "Low"]},
                                       "recommendations": {"type": "array", "items": {"type": "string"}},
                                       "risk_factors": {"type": "object"}, "disclaimer": {"type": "string"}}},
    "Diagnosis": {"allOf": [_ref("ChainPosition"), {
        "type": "object", "required": ["record_id", "result"],
        "properties": {"record_id": HEX_STRING, "created_ms": {"type": "integer"}, "result": _ref("DiagnosisResult"),
                       "images": {"type": "object"}, "patient_pseudonym": NULLABLE_HEX,
                       "record": {"oneOf": [_ref("Record"), {"type": "null"}]},
                       "wait": {"type": "object"}}}]},
}

RECORD_ID_PARAMETER = {"name": "record_id", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": HEX32}, "description": "16-byte record id, hex"}


def _paths() -> dict[str, Any]:
    public: dict[str, Any] = {"security": []}
    token: dict[str, Any] = {"security": [{"bearer": []}]}
    return {
        "/api/v1/status": {"get": {**public, "summary": "Node, chain tip and plug-in status",
                                   "responses": {"200": _json(_ref("Status"), "Status")}}},
        "/api/v1/blocks": {"get": {**public, "summary": "Best-chain blocks in height order (bounded)",
                                   "parameters": [
                                       {"name": "start", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                        "description": "first height (default: the latest `limit` blocks)"},
                                       {"name": "limit", "in": "query",
                                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}],
                                   "responses": {"200": _json(_ref("BlockList"), "Blocks"), **_errors(400)}}},
        "/api/v1/blocks/{ref}": {"get": {**public, "summary": "One block by best-chain height or by hash",
                                         "parameters": [{"name": "ref", "in": "path", "required": True,
                                                         "schema": {"type": "string",
                                                                    "pattern": "^([0-9]{1,12}|[0-9a-f]{64})$"}}],
                                         "responses": {"200": _json(_ref("Block"), "Block"), **_errors(400, 404)}}},
        "/api/v1/records/{record_id}": {"get": {
            **public, "summary": "An on-chain (or pending) record, its block, confirmations and Merkle proof",
            "parameters": [RECORD_ID_PARAMETER],
            "responses": {"200": _json(_ref("RecordOnChain"), "Record"), **_errors(400, 404)}}},
        "/api/v1/records/{record_id}/verify": {"get": {
            **public, "summary": "Recompute the record's commitment from local off-chain details",
            "parameters": [RECORD_ID_PARAMETER],
            "responses": {"200": _json(_ref("RecordVerification"), "Verification"), **_errors(400)}}},
        "/api/v1/chain/verify": {"get": {**public, "summary": "Re-validate the whole best chain from genesis",
                                         "responses": {"200": _json(_ref("ChainVerification"), "Report")}}},
        "/api/v1/chain/evidence": {"get": {
            **public, "summary": "Equivocation evidence: two conflicting blocks signed by one member (lock rule)",
            "responses": {"200": _json(_ref("Evidence"), "Evidence")}}},
        "/api/v1/peers": {"get": {**public, "summary": "Connected peers and their heights",
                                  "responses": {"200": _json(_ref("Peers"), "Peers")}}},
        "/api/v1/federated": {"get": {**public, "summary": "Federated rounds: head in use, rounds, participants",
                                      "responses": {"200": _json(_ref("Federated"), "Rounds")}}},
        "/api/v1/federated/heads": {"get": {**public, "summary": "Every head this node adopted (digests, ids)",
                                            "responses": {"200": _json(_ref("FederatedHeads"), "Heads")}}},
        "/api/v1/federated/heads/{digest}": {"get": {
            **public, "summary": "One adopted head by digest, weights included (to check a record's model id)",
            "parameters": [{"name": "digest", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": HEX64}, "description": "head digest, hex"}],
            "responses": {"200": _json(_ref("FederatedHead"), "The head"), **_errors(400, 404),
                          "500": _json(_ref("Error"), "The stored head is damaged (damaged-head)")}}},
        "/api/v1/federated/rounds": {"post": {
            **token, "summary": "Propose a federated round (administrators and the API token)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"duration_s": {"type": "number", "minimum": 1, "maximum": 86400},
                                                 "quorum": {"type": "integer", "minimum": 1, "maximum": 64},
                                                 "participants": {"type": "array", "maxItems": 64,
                                                                  "items": {"type": "string", "pattern": HEX32}}}}}}},
            "responses": {"202": _json({"type": "object"}, "The round as proposed"), **_errors(400, 401),
                          "403": _json(_ref("Error"), "Not an administrator"),
                          "409": _json(_ref("Error"), "This node takes no part in federated rounds")}}},
        "/api/v1/diagnoses": {"post": {
            **token, "summary": "Diagnose uploaded images; the record is stored and queued before the reply",
            "parameters": [{"name": "wait", "in": "query", "schema": {"enum": ["mined"]},
                            "description": "wait (bounded) until the record's block is on the best chain"},
                           {"name": "timeout", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 120, "default": 30}}],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "properties": {"xray": {"type": "string", "format": "binary"},
                               "ct": {"type": "string", "format": "binary"},
                               "age": {"type": "string", "description": "years, 0-130"},
                               "smoking": {"enum": ["never", "former", "current"]},
                               "family_history": {"enum": ["true", "false"]},
                               "patient_ref": {"type": "string", "maxLength": 128,
                                               "description": "stored only as a keyed hash"}}}}}},
            "responses": {"202": _json(_ref("Diagnosis"), "Accepted: stored durably, queued for mining"),
                          **_errors(400, 401, 413, 415, 422, 429, 503)}}},
        "/api/v1/diagnoses/{record_id}": {"get": {
            **token, "summary": "The full stored result (with heatmaps) and its chain status",
            "parameters": [RECORD_ID_PARAMETER],
            "responses": {"200": _json(_ref("Diagnosis"), "Diagnosis"), **_errors(400, 401, 404)}}},
    }


def build_openapi(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "LungLedger node API", "version": version,
                 "description": "Research use only — not for diagnostic use. See docs/API.md."},
        "paths": {**_paths(), **hospital_paths(), **ACCOUNT_PATHS},
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "the node's api_token"},
                                           "session": SESSION_SCHEME}},
    }
