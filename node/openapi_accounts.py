"""OpenAPI paths of the sign-in, worklist and audit routes (node/auth.py, node/api_worklist.py).

Merged into the node's document by ``node.openapi.build_openapi``.
"""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
PAGE = [{"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}]
SESSION = {"type": "object", "required": ["user", "csrf_token", "expires_ms"],
           "properties": {"user": {"type": "object"}, "csrf_token": {"type": "string"},
                          "expires_ms": {"type": "integer"}}}
SIGNED_IN: list[dict[str, list[str]]] = [{"session": []}, {"bearer": []}]


def _reply(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(**statuses: str) -> dict[str, Any]:
    return {status.removeprefix("e"): _reply(ERROR, text) for status, text in statuses.items()}


ACCOUNT_PATHS: dict[str, Any] = {
    "/api/v1/session": {
        "post": {"security": [], "summary": "Sign in: sets an HttpOnly SameSite=Strict session cookie; "
                                            "returns the CSRF token to send as X-CSRF-Token",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["username", "password"],
                     "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
                 "responses": {"201": _reply(SESSION, "Signed in"),
                               **_errors(e400="Bad body", e401="Wrong name or password, or disabled",
                                         e413="Body too large", e415="Not JSON", e429="Too many failed sign-ins")}},
        "get": {"security": [{"session": []}], "summary": "Who is signed in (and the CSRF token)",
                "responses": {"200": _reply(SESSION, "Signed in"), **_errors(e401="Nobody is signed in")}},
        "delete": {"security": [{"session": []}], "summary": "Sign out",
                   "responses": {"200": _reply({"type": "object"}, "Signed out"),
                                 **_errors(e401="Nobody is signed in", e403="Missing CSRF token")}},
    },
    "/api/v1/worklist": {"get": {
        "security": SIGNED_IN, "summary": "My diagnoses (scope=all: everyone's, administrators only), newest first",
        "parameters": [*PAGE, {"name": "scope", "in": "query", "schema": {"enum": ["mine", "all"]}},
                       {"name": "patient_ref", "in": "query", "schema": {"type": "string", "maxLength": 128}},
                       {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"},
                        "description": "a day, UTC"},
                       {"name": "risk_level", "in": "query", "schema": {"enum": ["High", "Moderate", "Low"]}}],
        "responses": {"200": _reply({"type": "object", "required": ["total", "offset", "limit", "items"]}, "Page"),
                      **_errors(e400="Bad parameter", e401="Not signed in", e403="Not an administrator")}}},
    "/api/v1/audit": {"get": {
        "security": SIGNED_IN, "summary": "The append-only audit log, newest first, and whether its hash chain "
                                          "is intact (administrators only)",
        "parameters": [*PAGE, {"name": "username", "in": "query", "schema": {"type": "string"}}],
        "responses": {"200": _reply({"type": "object", "required": ["total", "entries", "chain_intact"]}, "Page"),
                      **_errors(e400="Bad parameter", e401="Not signed in", e403="Not an administrator")}}},
    "/api/v1/events": {"get": {
        "security": [], "summary": "With Accept: text/event-stream, server-sent events 'tip' "
                                   "({height, tip_hash, tip_time_ms}) each time the best tip moves; "
                                   "otherwise the current tip once, as JSON",
        "responses": {"200": {"description": "The tip (JSON) or the event stream", "content": {
            "application/json": {"schema": {"type": "object", "required": ["height", "tip_hash", "tip_time_ms"]}},
            "text/event-stream": {"schema": {"type": "string"}}}}, **_errors(e429="Too many open streams")}}},
    "/api/v1/dicom/tags": {"post": {
        "security": SIGNED_IN, "summary": "The key DICOM header fields of a file (never patient identifiers); "
                                          "nothing is stored",
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                        "format": "binary"}}}},
        "responses": {"200": _reply({"type": "object", "required": ["tags"]}, "Tags"),
                      **_errors(e401="Not signed in", e403="Missing CSRF token", e413="Too large",
                                e415="Not DICOM", e422="Unreadable DICOM header")}}},
}

SESSION_SCHEME = {"type": "apiKey", "in": "cookie", "name": "lungledger_session",
                  "description": "set by POST /api/v1/session; state changes also need X-CSRF-Token"}
