"""Patient risk factors and their bounded adjustment of the model's log-odds.

The adjustment is a small, documented shift on the logit scale; it is not a
calibrated epidemiological model (see ``docs/DIAGNOSTICS.md``). Unknown
factors (``None``) contribute nothing. The total is clipped to
``[minimum, maximum]`` so that risk factors can move a borderline result but
never override a confident image finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diagnostics.errors import DiagnosisError

SMOKING_STATUSES = ("never", "former", "current")
MAX_AGE = 130
_TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
_FALSE_WORDS = frozenset({"false", "no", "0", "off"})
_UNKNOWN_WORDS = frozenset({"", "unknown", "none", "null"})
# Only ASCII blanks are trimmed: a no-break or zero-width space is not silently dropped.
_ASCII_BLANKS = " \t"
MAX_AGE_DIGITS = 6


@dataclass(frozen=True)
class RiskFactors:
    """Patient risk factors; ``None`` means unknown."""

    age: int | None = None
    smoking: str | None = None
    family_history: bool | None = None

    def __post_init__(self) -> None:
        if self.age is not None and (isinstance(self.age, bool) or not isinstance(self.age, int)):
            raise DiagnosisError("bad-risk-factor", f"age must be a whole number of years, got {self.age!r}")
        if self.age is not None and not 0 <= self.age <= MAX_AGE:
            raise DiagnosisError("bad-risk-factor", f"age must be between 0 and {MAX_AGE}, got {self.age}")
        if self.smoking is not None and self.smoking not in SMOKING_STATUSES:
            raise DiagnosisError("bad-risk-factor", f"smoking must be one of {SMOKING_STATUSES} or unknown, "
                                                    f"got {self.smoking!r}")
        if self.family_history is not None and not isinstance(self.family_history, bool):
            raise DiagnosisError("bad-risk-factor", f"family_history must be true, false or unknown, "
                                                    f"got {self.family_history!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RiskFactors:
        """Build from JSON or form fields; accepts strings such as ``"54"`` and ``"yes"``."""
        unknown = set(values) - {"age", "smoking", "family_history"}
        if unknown:
            raise DiagnosisError("bad-risk-factor", f"unknown risk factor(s) {sorted(unknown)}; "
                                                    "expected age, smoking, family_history")
        return cls(age=_parse_age(values.get("age")), smoking=_parse_smoking(values.get("smoking")),
                   family_history=_parse_flag(values.get("family_history")))

    def to_dict(self) -> dict[str, Any]:
        return {"age": self.age, "smoking": self.smoking, "family_history": self.family_history}


def parse_ascii_int(text: str, max_digits: int) -> int | None:
    """``text`` as a whole number written in ASCII digits 0-9 only, else None.

    ``str.isdigit`` and ``int`` also accept superscripts, circled and other
    scripts' digits (``"²"`` made ``int`` raise, ``"٣٤"`` became 34), so
    both are guarded by ``isascii``.
    """
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _parse_age(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip(_ASCII_BLANKS)
        if text.lower() in _UNKNOWN_WORDS:
            return None
        age = parse_ascii_int(text, MAX_AGE_DIGITS)
        if age is None:
            raise DiagnosisError("bad-risk-factor", f"age must be a whole number of years written with the digits "
                                                    f"0-9, got {value!r}")
        return age
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _parse_smoking(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip(_ASCII_BLANKS).lower()
        return None if text in _UNKNOWN_WORDS else text
    return value


def _parse_flag(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip(_ASCII_BLANKS).lower()
        if text in _UNKNOWN_WORDS:
            return None
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
    return value


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class RiskAdjustmentConfig:
    """Logit shifts per factor. ``age_bands`` are (lowest age, shift), ascending."""

    age_bands: tuple[tuple[int, float], ...] = ((0, -0.25), (40, 0.0), (55, 0.25), (65, 0.4), (75, 0.5))
    smoking: Mapping[str, float] = field(
        default_factory=lambda: _frozen({"never": -0.25, "former": 0.25, "current": 0.5}))
    family_history: float = 0.25
    minimum: float = -0.5
    maximum: float = 1.0

    def __post_init__(self) -> None:
        ages = [age for age, _ in self.age_bands]
        if not ages or ages[0] != 0 or ages != sorted(set(ages)):
            raise DiagnosisError("bad-config", "risk_adjustment.age_bands must start at age 0 and be ascending")
        if set(self.smoking) != set(SMOKING_STATUSES):
            raise DiagnosisError("bad-config", f"risk_adjustment.smoking needs exactly {SMOKING_STATUSES}")
        shifts = [shift for _, shift in self.age_bands] + list(self.smoking.values())
        shifts += [self.family_history, self.minimum, self.maximum]
        if not all(math.isfinite(float(shift)) for shift in shifts) or not self.minimum <= 0 <= self.maximum:
            raise DiagnosisError("bad-config", "risk_adjustment values must be finite and minimum <= 0 <= maximum")
        object.__setattr__(self, "smoking", _frozen(self.smoking))

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> RiskAdjustmentConfig:
        if not options:
            return cls()
        values = dict(options)
        if "age_bands" in values:
            values["age_bands"] = tuple((int(age), float(shift)) for age, shift in values["age_bands"])
        try:
            return cls(**values)
        except TypeError as error:
            raise DiagnosisError("bad-config", f"risk_adjustment: {error}") from error


@dataclass(frozen=True)
class RiskAdjustment:
    """Each factor's logit shift and the clipped total."""

    age: float
    smoking: float
    family_history: float
    total: float

    def to_dict(self) -> dict[str, float]:
        return {"age": self.age, "smoking": self.smoking, "family_history": self.family_history,
                "total": self.total}


def compute_risk_adjustment(risk: RiskFactors, config: RiskAdjustmentConfig) -> RiskAdjustment:
    """Sum the per-factor logit shifts and clip the total to the configured bounds."""
    age_shift = 0.0
    if risk.age is not None:
        age_shift = [shift for lowest, shift in config.age_bands if risk.age >= lowest][-1]
    smoking_shift = config.smoking[risk.smoking] if risk.smoking is not None else 0.0
    family_shift = config.family_history if risk.family_history else 0.0
    total = min(max(age_shift + smoking_shift + family_shift, config.minimum), config.maximum)
    return RiskAdjustment(age=float(age_shift), smoking=float(smoking_shift),
                          family_history=float(family_shift), total=float(total))
