"""A tiny synchronous client for a node's HTTP API (standard library only)."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from harness.util import OWN_NODE_TLS

MAX_PAGE = 100


class ApiFailure(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----lungledger" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request_json(url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None,
                 timeout: float = 30) -> Any:
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}), method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=OWN_NODE_TLS) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise ApiFailure(error.code, error.read().decode(errors="replace")) from error


def post_diagnosis(base_url: str, token: str, images: Mapping[str, bytes], age: int = 60, smoking: str = "former",
                   family_history: bool = False, patient_ref: str = "soak", wait_mined: bool = False,
                   timeout: float = 60) -> dict[str, Any]:
    fields = {"age": str(age), "smoking": smoking, "family_history": "true" if family_history else "false",
              "patient_ref": patient_ref}
    files = {modality: (f"{modality}.png", data) for modality, data in images.items()}
    body, content_type = encode_multipart(fields, files)
    url = f"{base_url}/api/v1/diagnoses" + ("?wait=mined" if wait_mined else "")
    return dict(request_json(url, body, {"Authorization": f"Bearer {token}", "Content-Type": content_type}, timeout))


def best_chain_record_counts(base_url: str, timeout: float = 30) -> tuple[dict[str, int], str]:
    """Record id -> how many times it appears on the node's best chain; and the tip hash walked."""
    status = request_json(f"{base_url}/api/v1/status", timeout=timeout)
    counts: dict[str, int] = {}
    for start in range(1, int(status["height"]) + 1, MAX_PAGE):
        page = request_json(f"{base_url}/api/v1/blocks?start={start}&limit={MAX_PAGE}", timeout=timeout)
        for block in page["blocks"]:
            for record_id in block["record_ids"]:
                counts[record_id] = counts.get(record_id, 0) + 1
    return counts, str(status["tip_hash"])
