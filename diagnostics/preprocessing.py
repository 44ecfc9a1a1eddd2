"""The one preprocessing function shared by training and inference.

Training (``training/``) and the node's plug-in (``diagnostics/``) both call
:func:`to_model_input`; two copies would drift. The model itself scales
``[0, 255]`` to ``[-1, 1]`` with a ``Rescaling`` layer, so this function stops
at ``[0, 255]``.

Steps, chosen for generalisation to other scanners and hospitals:

1. robust intensity normalisation: clip to the 1st..99th percentile of the
   image and stretch to ``[0, 255]`` (removes differences in overall
   brightness, contrast and bit depth between sources);
2. resize to a fixed square (``size`` x ``size``) whatever the aspect ratio,
   so that image shape cannot be learned as a shortcut;
3. replicate the grey channel to three channels (ImageNet backbone).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

INPUT_SIZE = 224
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0


def compute_percentiles(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile`` (linear method), from a 256-bin histogram when the pixels are 8-bit.

    Most inputs are 8-bit images: counting 256 bins is ~10x cheaper than
    partitioning the pixels, and gives the same order statistics.
    """
    as_bytes = values.astype(np.uint8)
    if not np.array_equal(as_bytes, values):
        low, high = np.percentile(values, percentiles)
        return float(low), float(high)
    cumulative = np.cumsum(np.bincount(as_bytes.ravel(), minlength=256))
    last = values.size - 1
    result = []
    for percentile in percentiles:
        position = last * percentile / 100.0
        below = int(np.floor(position))
        above = min(below + 1, last)
        low_value, high_value = np.searchsorted(cumulative, [below, above], side="right")
        result.append(float(low_value) + (position - below) * float(high_value - low_value))
    return result[0], result[1]


def normalise_intensity(gray: np.ndarray) -> np.ndarray:
    """Stretch the 1st..99th percentile range of a greyscale image to 0..255."""
    values = np.asarray(gray, dtype=np.float32)
    low, high = compute_percentiles(values, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if high - low < 1e-6:
        return np.zeros_like(values, dtype=np.float32)
    stretched = (values - low) * (255.0 / (high - low))
    return np.clip(stretched, 0.0, 255.0).astype(np.float32)


def to_model_input(gray: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Greyscale image (H, W), any numeric range -> float32 (size, size, 3) in [0, 255]."""
    values = np.asarray(gray)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale array, got shape {values.shape}")
    normalised = normalise_intensity(values)
    resized = Image.fromarray(normalised).resize((size, size), Image.Resampling.BILINEAR)
    square = np.asarray(resized, dtype=np.float32)
    return np.repeat(square[:, :, None], 3, axis=2)
