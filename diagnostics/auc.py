"""ROC AUC in plain numpy, shared by training (``training.metrics``) and the node's federated rounds."""

from __future__ import annotations

import math

import numpy as np


def compute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney probability P(score_pos > score_neg), ties count 1/2."""
    truth = np.asarray(labels).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    positives, negatives = values[truth], values[~truth]
    if positives.size == 0 or negatives.size == 0:
        return math.nan
    ranks = _average_ranks(np.concatenate([positives, negatives]))
    rank_sum = float(np.sum(ranks[: positives.size]))
    u_statistic = rank_sum - positives.size * (positives.size + 1) / 2.0
    return float(u_statistic / (positives.size * negatives.size))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts).astype(np.float64)
    average = last_rank - (counts - 1) / 2.0
    return average[inverse.ravel()]
