"""The one exception type of the diagnostic plug-in.

Every refusal carries a stable, machine-readable reason code (``"empty-file"``,
``"bad-risk-factor"``, ...) and a message a person can act on. The node maps
the code to an HTTP status and shows the message; tests assert on the code.
The full list of codes is in ``docs/DIAGNOSTICS.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Every reason code a diagnosis can be refused with, and the HTTP status the node answers it with
# (as consensus keeps REASON_CODES). 4xx: the request; 503: this node's models or configuration.
# tests/unit/test_diagnostics_errors.py fails when a code raised anywhere is missing here.
REASON_CODES: Mapping[str, int] = MappingProxyType({
    "no-image": 400, "bad-modality": 400, "bad-risk-factor": 400, "bad-patient-ref": 400,
    "file-too-large": 413, "too-many-pixels": 413,
    "unsupported-format": 415,
    "empty-file": 422, "corrupt-image": 422, "image-too-small": 422, "not-greyscale": 422,
    "not-a-chest-image": 422, "wrong-modality": 422, "bad-result": 422, "model-unavailable": 422,
    "unknown-plugin": 422, "bad-plugin": 422, "bad-dicom-header": 422, "decode-timeout": 422,
    "bad-config": 503, "bad-model-card": 503, "model-mismatch": 503, "decode-busy": 503,
})
DEFAULT_STATUS = 422


def get_http_status(code: str) -> int:
    """The HTTP status for a reason code (422 for one not registered yet)."""
    return REASON_CODES.get(code, DEFAULT_STATUS)


class DiagnosisError(ValueError):
    """A diagnosis request (or plug-in configuration) was refused.

    ``code`` is a stable reason code; ``message`` says what was wrong and
    what to do about it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """JSON-serialisable form for API error bodies."""
        return {"code": self.code, "message": self.message}
