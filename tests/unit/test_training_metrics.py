"""Metrics against values computed by hand on fixed predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    choose_threshold,
    compute_auc,
    compute_bootstrap_auc_interval,
    compute_confusion,
    compute_roc_curve,
    compute_wilson_interval,
    summarise,
)

# 3 cancer, 3 normal. At 0.5: tp=2 (0.9, 0.8), fn=1 (0.4), fp=1 (0.7), tn=2.
LABELS = np.array([1, 1, 1, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.1])


def test_confusion_counts_at_threshold() -> None:
    confusion = compute_confusion(LABELS, SCORES, 0.5)
    assert (confusion.true_positive, confusion.false_negative) == (2, 1)
    assert (confusion.false_positive, confusion.true_negative) == (1, 2)


def test_score_equal_to_threshold_is_positive() -> None:
    confusion = compute_confusion(np.array([1, 0]), np.array([0.5, 0.49]), 0.5)
    assert confusion.true_positive == 1 and confusion.true_negative == 1


def test_auc_counts_pairs() -> None:
    # Pairs won by the positive: 0.9 -> 3, 0.8 -> 3, 0.4 -> 2 (beats 0.2, 0.1): 8 of 9.
    assert compute_auc(LABELS, SCORES) == pytest.approx(8 / 9)


def test_auc_ties_count_half() -> None:
    # 0.6 beats both negatives (2); 0.3 ties 0.3 (0.5) and beats 0.1 (1): 3.5 of 4.
    assert compute_auc(np.array([1, 1, 0, 0]), np.array([0.6, 0.3, 0.3, 0.1])) == pytest.approx(0.875)
    assert compute_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_auc_undefined_with_one_class() -> None:
    assert math.isnan(compute_auc(np.array([1, 1]), np.array([0.2, 0.9])))


@pytest.mark.parametrize(
    ("successes", "total", "low", "high"),
    [
        (4, 6, 0.29999, 0.90324),  # p=2/3: centre 0.60161 +- 0.30163
        (0, 10, 0.0, 0.27753),  # upper = z^2 / (n + z^2)
        (10, 10, 0.72247, 1.0),
        (50, 100, 0.40383, 0.59617),
    ],
)
def test_wilson_interval_matches_hand_values(successes: int, total: int, low: float, high: float) -> None:
    assert compute_wilson_interval(successes, total) == pytest.approx((low, high), abs=2e-5)


def test_summary_at_threshold() -> None:
    result = summarise(LABELS, SCORES, 0.5)
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert (result["accuracy_ci_low"], result["accuracy_ci_high"]) == pytest.approx((0.29999, 0.90324), abs=2e-5)
    assert result["auc"] == pytest.approx(8 / 9)
    assert result["auc_ci_low"] <= result["auc"] <= result["auc_ci_high"]


def test_bootstrap_interval_is_degenerate_for_perfect_separation() -> None:
    assert compute_bootstrap_auc_interval(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == (1.0, 1.0)


def test_bootstrap_interval_is_reproducible_and_ordered() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    scores = labels * 0.3 + rng.uniform(0, 1, 80)
    first = compute_bootstrap_auc_interval(labels, scores)
    assert first == compute_bootstrap_auc_interval(labels, scores)
    assert first[0] < compute_auc(labels, scores) < first[1]


def test_roc_curve_runs_from_origin_to_corner() -> None:
    fpr, tpr, _ = compute_roc_curve(LABELS, SCORES)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(8 / 9)


def test_threshold_maximises_youden_and_prefers_cut_near_half() -> None:
    # Cuts 0.225 and 0.6 both give J = 0.5; 0.6 is nearer 0.5.
    assert choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.6)


def test_threshold_separates_perfectly_separable_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.05, 0.2, 0.3, 0.7, 0.95])
    threshold = choose_threshold(labels, scores)
    assert 0.3 < threshold < 0.7
    assert summarise(labels, scores, threshold)["accuracy"] == 1.0
