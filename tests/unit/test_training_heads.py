"""numpy heads: logistic regression, temperature scaling, calibration figures, Gaussian distance;
and the look randomisation used in training."""

from __future__ import annotations

import numpy as np
import pytest

from training.heads import (compute_brier, compute_ece, compute_sigmoid, fit_gaussian, fit_logistic,
                            fit_temperature, reliability_bins)
from training.look import foreign_look, vary_look
from training.metrics import compute_auc


def test_logistic_head_separates_shifted_gaussians_and_works_on_raw_features() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    features = rng.normal(0, 1, (400, 20)) * 5 + 100  # raw scale and offset: folded back into the head
    features[:, 3] += 20.0 * labels  # 4 standard deviations apart
    head = fit_logistic(features, labels, l2=1e-3)
    assert compute_auc(labels, head.logits(features)) > 0.95
    assert np.argmax(np.abs(head.weights)) == 3


def test_stronger_penalty_gives_smaller_weights() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    features = rng.normal(0, 1, (200, 10)) + labels[:, None] * 0.5
    assert np.linalg.norm(fit_logistic(features, labels, 1.0).weights) < \
        np.linalg.norm(fit_logistic(features, labels, 1e-4).weights)


def test_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, 20_000)
    labels = (rng.random(20_000) < compute_sigmoid(true_logits)).astype(int)
    temperature = fit_temperature(3.0 * true_logits, labels)  # a model 3x overconfident
    assert temperature == pytest.approx(3.0, rel=0.05)
    raw, calibrated = compute_sigmoid(3.0 * true_logits), compute_sigmoid(3.0 * true_logits / temperature)
    assert compute_ece(calibrated, labels) < compute_ece(raw, labels)
    assert compute_brier(calibrated, labels) < compute_brier(raw, labels)


def test_brier_and_ece_hand_worked() -> None:
    probabilities = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0, 1, 1, 1])
    assert compute_brier(probabilities, labels) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    # bins: [0.1, 0.1] observed 0.5 -> |0.1 - 0.5| * 0.5; [0.9, 0.9] observed 1 -> |0.9 - 1| * 0.5
    assert compute_ece(probabilities, labels) == pytest.approx(0.2 + 0.05)
    assert [row["n"] for row in reliability_bins(probabilities, labels)] == [2, 2]


def test_gaussian_distance_is_small_inside_and_large_far_away() -> None:
    rng = np.random.default_rng(3)
    training = rng.normal(0, 1, (500, 64))
    model = fit_gaussian(training, components=16)
    inside = model.distance(rng.normal(0, 1, (100, 64)))
    outside = model.distance(rng.normal(0, 1, (100, 64)) + 3.0)
    assert np.median(inside) * 2 < np.median(outside)
    assert np.quantile(inside, 0.99) < np.min(outside)


def test_look_changes_are_seeded_8_bit_and_keep_the_size() -> None:
    gray = np.tile(np.linspace(0, 255, 200, dtype=np.float32), (180, 1))
    first = vary_look(gray, np.random.default_rng(5), flip=True)
    again = vary_look(gray, np.random.default_rng(5), flip=True)
    assert first.dtype == np.uint8 and first.shape == gray.shape
    assert np.array_equal(first, again)
    assert not np.array_equal(first, vary_look(gray, np.random.default_rng(6)))
    assert np.array_equal(foreign_look(gray, 1), foreign_look(gray, 1))
