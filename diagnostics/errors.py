"""The one exception type of the diagnostic plug-in.

Every refusal carries a stable, machine-readable reason code (``"empty-file"``,
``"bad-risk-factor"``, ...) and a message a person can act on. The node maps
the code to an HTTP status and shows the message; tests assert on the code.
The full list of codes is in ``docs/DIAGNOSTICS.md``.
"""

from __future__ import annotations


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
