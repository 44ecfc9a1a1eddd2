"""Stress-test perturbations: blur keeps a constant image, smooths an impulse; noise is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from training.perturb import add_noise, apply_perturbation, blur


def test_blur_keeps_constant_images_and_spreads_an_impulse() -> None:
    flat = np.full((1, 16, 16, 3), 100.0, np.float32)
    assert np.allclose(blur(flat), 100.0, atol=1e-3)
    impulse = np.zeros((1, 17, 17, 3), np.float32)
    impulse[0, 8, 8, :] = 255.0
    blurred = blur(impulse)
    assert blurred.sum() == pytest.approx(impulse.sum(), rel=1e-4)  # mass preserved away from edges
    assert 0 < blurred[0, 8, 8, 0] < 255 and blurred[0, 8, 9, 0] > 0
    assert np.allclose(blurred[..., 0], blurred[..., 2])


def test_noise_is_grey_clipped_and_reproducible() -> None:
    images = np.full((2, 8, 8, 3), 250.0, np.float32)
    noisy = add_noise(images)
    assert np.array_equal(noisy, add_noise(images))
    assert noisy.max() <= 255.0 and noisy.std() > 0
    assert np.array_equal(noisy[..., 0], noisy[..., 1])


def test_unknown_perturbation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown perturbation"):
        apply_perturbation(np.zeros((1, 4, 4, 3), np.float32), "rotate")
