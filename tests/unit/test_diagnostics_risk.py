"""Risk factors: validation with reason codes, parsing of form values, the bounded adjustment."""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.errors import DiagnosisError
from diagnostics.risk import RiskAdjustmentConfig, RiskFactors, compute_risk_adjustment

DEFAULT = RiskAdjustmentConfig()


@pytest.mark.parametrize("kwargs", [
    {"age": -1}, {"age": 131}, {"age": 54.5}, {"age": True}, {"age": "54"},
    {"smoking": "sometimes"}, {"smoking": "Current"}, {"family_history": "yes"}, {"family_history": 1},
])
def test_invalid_risk_factors_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DiagnosisError) as caught:
        RiskFactors(**kwargs)
    assert caught.value.code == "bad-risk-factor"


def test_risk_factors_are_frozen() -> None:
    risk = RiskFactors(age=60)
    with pytest.raises(AttributeError):
        risk.age = 70  # type: ignore[misc]


def test_from_mapping_parses_form_values() -> None:
    assert RiskFactors.from_mapping({"age": " 67 ", "smoking": "Former", "family_history": "yes"}) \
        == RiskFactors(67, "former", True)
    assert RiskFactors.from_mapping({"age": "", "smoking": "unknown", "family_history": "no"}) \
        == RiskFactors(None, None, False)
    assert RiskFactors.from_mapping({"age": 67.0, "family_history": False}) == RiskFactors(67, None, False)
    assert RiskFactors.from_mapping({}) == RiskFactors()


@pytest.mark.parametrize("values", [
    {"age": "sixty"}, {"age": "-3"}, {"smoking": "cigars"}, {"family_history": "maybe"}, {"weight": 80},
])
def test_from_mapping_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(DiagnosisError) as caught:
        RiskFactors.from_mapping(values)
    assert caught.value.code == "bad-risk-factor"


@pytest.mark.parametrize(("risk", "age", "smoking", "family", "total"), [
    (RiskFactors(), 0.0, 0.0, 0.0, 0.0),
    (RiskFactors(age=39), -0.25, 0.0, 0.0, -0.25),
    (RiskFactors(age=40), 0.0, 0.0, 0.0, 0.0),
    (RiskFactors(age=54, smoking="former"), 0.0, 0.25, 0.0, 0.25),
    (RiskFactors(age=55, smoking="never", family_history=False), 0.25, -0.25, 0.0, 0.0),
    (RiskFactors(age=70, smoking="current"), 0.4, 0.5, 0.0, 0.9),
    # 0.5 + 0.5 + 0.25 = 1.25, capped at +1.0
    (RiskFactors(age=80, smoking="current", family_history=True), 0.5, 0.5, 0.25, 1.0),
    # -0.25 - 0.25 = -0.5, exactly the floor
    (RiskFactors(age=25, smoking="never", family_history=False), -0.25, -0.25, 0.0, -0.5),
])
def test_adjustment_hand_worked(risk: RiskFactors, age: float, smoking: float, family: float, total: float) -> None:
    adjustment = compute_risk_adjustment(risk, DEFAULT)
    assert (adjustment.age, adjustment.smoking, adjustment.family_history) == (age, smoking, family)
    assert adjustment.total == pytest.approx(total)


def test_adjustment_floor_applies() -> None:
    config = RiskAdjustmentConfig(minimum=-0.3)
    assert compute_risk_adjustment(RiskFactors(age=25, smoking="never"), config).total == pytest.approx(-0.3)


def test_config_from_options_and_bad_config() -> None:
    config = RiskAdjustmentConfig.from_options({"age_bands": [[0, 0.0], [60, 0.3]], "family_history": 0.1})
    assert compute_risk_adjustment(RiskFactors(age=61, family_history=True), config).total == pytest.approx(0.4)
    for bad in ({"age_bands": [[10, 0.0]]}, {"smoking": {"never": 0.0}}, {"maximum": -1.0}, {"colour": 1}):
        with pytest.raises(DiagnosisError) as caught:
            RiskAdjustmentConfig.from_options(bad)
        assert caught.value.code == "bad-config"
