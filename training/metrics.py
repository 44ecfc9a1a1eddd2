"""Binary classification metrics in plain numpy (no TensorFlow, no sklearn).

Conventions: ``labels`` are 0 (normal) / 1 (cancer); ``scores`` are predicted
probabilities of cancer; an image is called positive when ``score >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diagnostics.auc import compute_auc as compute_auc  # re-exported: training code imports it from here

Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold."""

    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int


def compute_confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    """Confusion counts with the rule ``score >= threshold`` -> positive."""
    truth = np.asarray(labels).astype(bool)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    return Confusion(
        true_positive=int(np.sum(truth & called)),
        false_positive=int(np.sum(~truth & called)),
        true_negative=int(np.sum(~truth & ~called)),
        false_negative=int(np.sum(truth & ~called)),
    )


def compute_wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when total is 0."""
    if total == 0:
        return (math.nan, math.nan)
    proportion = successes / total
    denominator = 1.0 + z * z / total
    centre = (proportion + z * z / (2 * total)) / denominator
    half = z * math.sqrt(proportion * (1 - proportion) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def compute_bootstrap_auc_interval(
    labels: np.ndarray, scores: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile 95% interval of the AUC, resampling positives and negatives separately.

    Stratified resampling keeps both classes in every resample, so every
    replicate has a defined AUC; the seed makes the interval reproducible.
    """
    truth = np.asarray(labels).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    positives, negatives = values[truth], values[~truth]
    if positives.size == 0 or negatives.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    replicate_labels = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    replicates = np.empty(resamples)
    for index in range(resamples):
        drawn = np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)])
        replicates[index] = compute_auc(replicate_labels, drawn)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return (float(low), float(high))


def compute_roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds, from (0,0) to (1,1)."""
    truth = np.asarray(labels).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    thresholds = np.concatenate([[np.inf], np.unique(values)[::-1]])
    positives, negatives = max(int(truth.sum()), 1), max(int((~truth).sum()), 1)
    tpr = np.array([np.sum(truth & (values >= t)) / positives for t in thresholds])
    fpr = np.array([np.sum(~truth & (values >= t)) / negatives for t in thresholds])
    return fpr, tpr, thresholds


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising Youden's J (sensitivity + specificity - 1).

    The cut is placed halfway between the two neighbouring distinct scores, so
    it does not sit on a training-set score; among equal J the cut nearest 0.5 wins.
    """
    values = np.unique(np.asarray(scores, dtype=np.float64))
    if values.size < 2:
        return 0.5
    cuts = (values[:-1] + values[1:]) / 2.0
    best_key, best_cut = (-math.inf, -math.inf), 0.5
    for cut in cuts:
        confusion = compute_confusion(labels, scores, float(cut))
        key = (round(_youden(confusion), 12), -abs(cut - 0.5))
        if key > best_key:
            best_key, best_cut = key, float(cut)
    return best_cut


def _youden(confusion: Confusion) -> float:
    positives = confusion.true_positive + confusion.false_negative
    negatives = confusion.true_negative + confusion.false_positive
    sensitivity = confusion.true_positive / positives if positives else 0.0
    specificity = confusion.true_negative / negatives if negatives else 0.0
    return sensitivity + specificity - 1.0


def summarise(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int]:
    """n, accuracy, sensitivity, specificity (Wilson 95% CIs) and AUC (bootstrap 95% CI)."""
    confusion = compute_confusion(labels, scores, threshold)
    positives = confusion.true_positive + confusion.false_negative
    negatives = confusion.true_negative + confusion.false_positive
    correct = confusion.true_positive + confusion.true_negative
    total = positives + negatives
    result: dict[str, float | int] = {"n": total, "positives": positives, "negatives": negatives, "threshold": threshold}
    for name, hits, count in (
        ("accuracy", correct, total),
        ("sensitivity", confusion.true_positive, positives),
        ("specificity", confusion.true_negative, negatives),
    ):
        low, high = compute_wilson_interval(hits, count)
        result.update({name: hits / count if count else math.nan, f"{name}_ci_low": low, f"{name}_ci_high": high})
    auc_low, auc_high = compute_bootstrap_auc_interval(labels, scores)
    result.update({"auc": compute_auc(labels, scores), "auc_ci_low": auc_low, "auc_ci_high": auc_high})
    result.update({"tp": confusion.true_positive, "fp": confusion.false_positive,
                   "tn": confusion.true_negative, "fn": confusion.false_negative})
    return result
