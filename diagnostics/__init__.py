"""LungLedger diagnostics: image decoding, preprocessing and the diagnostic plug-ins.

Importing this package is light (no LiteRT, no pydicom): the inference
plug-in is imported only by :func:`load_plugin`. See ``docs/DIAGNOSTICS.md``.
"""

from diagnostics.errors import DiagnosisError
from diagnostics.plugin import (
    DEFAULT_PLUGIN_NAME,
    PLUGIN_REGISTRY,
    DiagnosticPlugin,
    load_plugin,
    register_plugin,
)
from diagnostics.result import DISCLAIMER, DiagnosisResult, ModalityResult, ModelInfo
from diagnostics.risk import RiskFactors

__all__ = [
    "DEFAULT_PLUGIN_NAME",
    "DISCLAIMER",
    "PLUGIN_REGISTRY",
    "DiagnosisError",
    "DiagnosisResult",
    "DiagnosticPlugin",
    "ModalityResult",
    "ModelInfo",
    "RiskFactors",
    "load_plugin",
    "register_plugin",
]
