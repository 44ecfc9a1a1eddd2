"""Numbers in form fields are ASCII digits only.

``str.isdigit`` is true for superscripts, circled digits and the digits of every
script, and ``int`` accepts most of them: ``age=²`` made ``int`` raise (a 500)
and ``age=٣٤`` was stored as 34. Every one of these is a ``bad-risk-factor``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.errors import DiagnosisError
from diagnostics.risk import RiskFactors

NON_ASCII_NUMBERS = ["²", "①", "٣٤", "３４", "𝟑𝟒", "⁴⁵", "๓๔", "3\u00b2", "34\u00a0", "\u200b34", "Ⅻ", "½"]


@pytest.mark.parametrize("text", NON_ASCII_NUMBERS)
def test_non_ascii_ages_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(DiagnosisError) as caught:
        RiskFactors.from_mapping({"age": text})
    assert caught.value.code == "bad-risk-factor"
    assert "age" in caught.value.message


@pytest.mark.parametrize(("text", "age"), [("34", 34), (" 67\t", 67), ("0", 0), ("007", 7), ("130", 130)])
def test_ascii_ages_still_parse(text: str, age: int) -> None:
    assert RiskFactors.from_mapping({"age": text}).age == age


@given(st.text(max_size=12))
def test_any_age_text_parses_or_is_refused_with_the_risk_code(text: str) -> None:
    try:
        risk = RiskFactors.from_mapping({"age": text})
    except DiagnosisError as error:
        assert error.code == "bad-risk-factor"
        return
    stripped = text.strip(" \t")
    assert risk.age is None or (stripped.isascii() and stripped.isdigit() and risk.age == int(stripped))
