"""Image perturbations for shortcut stress tests (numpy only, no TensorFlow).

A model that reads anatomy should barely change its ranking when an image is
slightly blurred or gets a little noise; one that learned the scanner's grain
(see training/augment.py) collapses. Applied to model input (n, S, S, 3).
"""

from __future__ import annotations

import numpy as np

PERTURBATIONS = ("none", "blur", "noise")
BLUR_SIGMA = 1.2
NOISE_STD = 8.0
NOISE_SEED = 7


def blur(images: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Separable Gaussian blur over height and width (edges padded by reflection)."""
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets**2) / (2 * sigma * sigma))
    weights /= weights.sum()
    result = np.asarray(images, dtype=np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * result.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(result, pad, mode="reflect")
        size = result.shape[axis]
        result = sum(w * np.take(padded, np.arange(k, k + size), axis=axis) for k, w in enumerate(weights))
    return result.astype(np.float32)


def add_noise(images: np.ndarray, std: float = NOISE_STD, seed: int = NOISE_SEED) -> np.ndarray:
    """The same Gaussian grey noise in the three channels, clipped to [0, 255]."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, std, images.shape[:3]).astype(np.float32)[..., None]
    return np.clip(images + noise, 0.0, 255.0).astype(np.float32)


def apply_perturbation(images: np.ndarray, name: str) -> np.ndarray:
    """``none``, ``blur`` or ``noise``."""
    if name == "none":
        return images
    if name == "blur":
        return blur(images)
    if name == "noise":
        return add_noise(images)
    raise ValueError(f"unknown perturbation {name!r}; choose one of {PERTURBATIONS}")
