"""Fusion, labels, confidence, risk levels and recommendations against hand-worked cases.

The numbers in comments were worked out by hand (natural logarithms).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.errors import DiagnosisError
from diagnostics.fusion import (
    CT_NODULE_GUIDELINE,
    RADIOGRAPH_FINDING_CT,
    SCREENING_ELIGIBILITY,
    SMOKING_CESSATION,
    DiagnosisConfig,
    ModelEvidence,
    RiskLevelConfig,
    compute_assessment,
    compute_confidence,
    compute_fusion,
    compute_logit,
    compute_model_weights,
    compute_sigmoid,
    get_risk_level,
)
from diagnostics.risk import RiskFactors

CT = ModelEvidence("ct", probability=0.8, threshold=0.5, auc=0.9)
XRAY = ModelEvidence("xray", probability=0.3, threshold=0.4, auc=0.7)


def test_logit_and_sigmoid() -> None:
    assert compute_logit(0.8) == pytest.approx(math.log(4))  # 1.386294
    assert compute_sigmoid(math.log(4)) == pytest.approx(0.8)
    assert math.isfinite(compute_logit(0.0)) and math.isfinite(compute_logit(1.0))
    assert compute_sigmoid(-1000) == 0.0 and compute_sigmoid(1000) == 1.0


def test_weights_follow_auc_above_chance() -> None:
    # raw weights 0.4 and 0.2 -> 2/3 and 1/3
    assert compute_model_weights([CT, XRAY]) == pytest.approx({"ct": 2 / 3, "xray": 1 / 3})
    # a model at or below chance keeps the minimum weight 0.01: 0.4 / 0.41
    useless = ModelEvidence("xray", 0.9, 0.5, auc=0.45)
    assert compute_model_weights([CT, useless])["ct"] == pytest.approx(0.4 / 0.41)
    no_auc = ModelEvidence("xray", 0.9, 0.5, auc=None)
    assert compute_model_weights([CT, no_auc])["xray"] == pytest.approx(0.01 / 0.41)


def test_no_evidence_is_refused() -> None:
    with pytest.raises(DiagnosisError) as caught:
        compute_model_weights([])
    assert caught.value.code == "no-image"


def test_single_model_fusion_is_the_model_itself() -> None:
    fusion = compute_fusion([CT])
    assert fusion.probability == pytest.approx(0.8) and fusion.threshold == pytest.approx(0.5)


def test_two_model_fusion_hand_worked() -> None:
    # logit(0.8) = 1.386294, logit(0.3) = -0.847298
    # z = 2/3 * 1.386294 + 1/3 * -0.847298 = 0.641764 -> p = 0.655152
    # thresholds: logit(0.5) = 0, logit(0.4) = -0.405465; 1/3 * -0.405465 = -0.135155 -> t = 0.466263
    fusion = compute_fusion([CT, XRAY])
    assert fusion.logit == pytest.approx(0.641764, abs=1e-6)
    assert fusion.probability == pytest.approx(0.655152, abs=1e-6)
    assert fusion.threshold == pytest.approx(0.466263, abs=1e-6)


def test_confidence_hand_worked() -> None:
    assert compute_confidence(0.5, 0.5) == 50.0
    assert compute_confidence(1.0, 0.5) == 100.0 and compute_confidence(0.0, 0.5) == 100.0
    assert compute_confidence(0.8, 0.6) == pytest.approx(75.0)  # 50 + 50 * 0.2 / 0.4
    assert compute_confidence(0.15, 0.6) == pytest.approx(87.5)  # 50 + 50 * 0.45 / 0.6


def test_risk_levels() -> None:
    config = RiskLevelConfig(high=0.7, moderate=0.4)
    assert get_risk_level(0.7, "affected", config) == "High"
    assert get_risk_level(0.69, "affected", config) == "Moderate"
    assert get_risk_level(0.4, "normal", config) == "Moderate"
    assert get_risk_level(0.39, "normal", config) == "Low"
    assert get_risk_level(0.35, "affected", config) == "Moderate"  # an affected label is never Low
    for high, moderate in ((0.4, 0.7), (1.0, 0.5), (0.5, 0.0)):
        with pytest.raises(DiagnosisError) as caught:
            RiskLevelConfig(high=high, moderate=moderate)
        assert caught.value.code == "bad-config"


def test_assessment_both_modalities_with_risk_factors_hand_worked() -> None:
    # fused logit 0.641764 -> p = 0.655152 >= t = 0.466263: the images alone say affected
    # confidence (images) = 50 + 50 * (0.655152 - 0.466263) / (1 - 0.466263) = 67.695
    # risk: age 70 (+0.4) + current smoker (+0.5) = +0.9; risk score = sigmoid(1.541764) = 0.823721 -> High
    risk = RiskFactors(age=70, smoking="current", family_history=False)
    assessment = compute_assessment([CT, XRAY], risk, DiagnosisConfig())
    assert assessment.adjustment.total == pytest.approx(0.9)
    assert assessment.adjusted_probability == pytest.approx(0.823721, abs=1e-6)
    assert assessment.label == "affected"
    assert assessment.confidence == pytest.approx(67.695, abs=1e-3)
    assert assessment.risk_level == "High"
    # a lesion is seen on CT: the nodule guideline, cessation, and no screening advice
    assert assessment.recommendations[-2:] == (CT_NODULE_GUIDELINE, SMOKING_CESSATION)
    assert SCREENING_ELIGIBILITY not in assessment.recommendations


def test_risk_factors_move_the_risk_level_but_never_the_image_finding() -> None:
    borderline = ModelEvidence("ct", probability=0.45, threshold=0.5, auc=0.9)
    low_risk = compute_assessment([borderline], RiskFactors(), DiagnosisConfig())
    high_risk = compute_assessment([borderline], RiskFactors(age=80, smoking="current", family_history=True),
                                   DiagnosisConfig())
    # before this rule, the +1.0 adjustment turned this normal image into "affected"
    assert (low_risk.label, high_risk.label) == ("normal", "normal")
    assert low_risk.confidence == high_risk.confidence == pytest.approx(55.0)  # 50 + 50 * 0.05 / 0.5
    # sigmoid(logit(0.45) + 1.0) = sigmoid(0.799329) = 0.689831 (capped adjustment): Moderate, not Low
    assert high_risk.adjusted_probability == pytest.approx(0.689831, abs=1e-6)
    assert (low_risk.risk_level, high_risk.risk_level) == ("Moderate", "Moderate")
    confident = ModelEvidence("ct", probability=0.05, threshold=0.5, auc=0.9)
    worst_case = compute_assessment([confident], RiskFactors(age=80, smoking="current", family_history=True),
                                    DiagnosisConfig())
    # sigmoid(logit(0.05) + 1.0) = sigmoid(-1.944439) = 0.125161
    assert worst_case.adjusted_probability == pytest.approx(0.125161, abs=1e-6)
    assert (worst_case.label, worst_case.risk_level) == ("normal", "Low")
    # protective factors cannot hide a finding either: sigmoid(0.200671 - 0.5) = sigmoid(-0.299329) = 0.425721 < 0.5
    finding = ModelEvidence("ct", probability=0.55, threshold=0.5, auc=0.9)
    young = compute_assessment([finding], RiskFactors(age=25, smoking="never"), DiagnosisConfig())
    assert young.adjusted_probability == pytest.approx(0.425721, abs=1e-6)
    assert (young.label, young.risk_level) == ("affected", "Moderate")


RISKS = st.builds(RiskFactors, age=st.one_of(st.none(), st.integers(0, 130)),
                  smoking=st.sampled_from([None, "never", "former", "current"]),
                  family_history=st.sampled_from([None, False, True]))
PROBABILITY = st.floats(0.0, 1.0, allow_nan=False)
THRESHOLD = st.floats(0.01, 0.99, allow_nan=False)


@given(ct=st.tuples(PROBABILITY, THRESHOLD), xray=st.one_of(st.none(), st.tuples(PROBABILITY, THRESHOLD)),
       risk=RISKS)
def test_property_the_image_finding_ignores_risk_factors(ct: tuple[float, float], xray: tuple[float, float] | None,
                                                         risk: RiskFactors) -> None:
    evidence = [ModelEvidence("ct", ct[0], ct[1], 0.9)]
    if xray is not None:
        evidence.append(ModelEvidence("xray", xray[0], xray[1], 0.6))
    without = compute_assessment(evidence, RiskFactors(), DiagnosisConfig())
    with_risk = compute_assessment(evidence, risk, DiagnosisConfig())
    fusion = compute_fusion(evidence)
    assert with_risk.label == without.label == ("affected" if fusion.probability >= fusion.threshold else "normal")
    assert with_risk.confidence == without.confidence
    if with_risk.label == "affected":
        assert with_risk.risk_level != "Low" and SCREENING_ELIGIBILITY not in with_risk.recommendations


def test_recommendations_fit_the_modality_and_the_finding() -> None:
    smoker = RiskFactors(age=60, smoking="former")
    xray_finding = compute_assessment([ModelEvidence("xray", 0.9, 0.5, 0.8)], smoker, DiagnosisConfig())
    assert RADIOGRAPH_FINDING_CT in xray_finding.recommendations
    assert not any("Fleischner" in text for text in xray_finding.recommendations)
    assert SCREENING_ELIGIBILITY not in xray_finding.recommendations
    xray_clear = compute_assessment([ModelEvidence("xray", 0.1, 0.5, 0.8)], smoker, DiagnosisConfig())
    assert SCREENING_ELIGIBILITY in xray_clear.recommendations
    assert not any("Fleischner" in text or text == RADIOGRAPH_FINDING_CT for text in xray_clear.recommendations)


def test_low_risk_recommendations_are_suggestions() -> None:
    assessment = compute_assessment([ModelEvidence("xray", 0.1, 0.5, 0.8)], RiskFactors(age=30, smoking="never"),
                                    DiagnosisConfig())
    assert assessment.risk_level == "Low"
    assert all(text.startswith(("Consider", "No further action is suggested"))
               for text in assessment.recommendations)


def test_config_from_options() -> None:
    config = DiagnosisConfig.from_options({"risk_levels": {"high": 0.9, "moderate": 0.2},
                                           "recommendations": {"Low": ["Consider nothing."]}})
    assessment = compute_assessment([ModelEvidence("ct", 0.3, 0.5, 0.8)], RiskFactors(), config)
    assert (assessment.risk_level, assessment.recommendations) == ("Moderate", config.recommendations["Moderate"])
    low = compute_assessment([ModelEvidence("ct", 0.1, 0.5, 0.8)], RiskFactors(), config)
    assert low.recommendations == ("Consider nothing.",)
    for bad in ({"risk_levels": {"urgent": 0.9}}, {"recommendations": {"Severe": ["x"]}},
                {"recommendations": {"Low": "not a list"}}):
        with pytest.raises(DiagnosisError) as caught:
            DiagnosisConfig.from_options(bad)
        assert caught.value.code == "bad-config"
