"""The one preprocessing function shared by training and inference.

Training (``training/``) and the node's plug-in (``diagnostics/``) both call
:func:`to_model_input`; two copies would drift. The model itself scales
``[0, 255]`` to ``[-1, 1]`` with a ``Rescaling`` layer, so this function stops
at ``[0, 255]``.

Steps (8-bit throughout, chosen by the ablation in ``docs/MODELS.md``):

1. round the decoded greyscale image to 8 bits and resize it to a fixed square
   (``size`` x ``size``) whatever the aspect ratio, so that image shape cannot
   be learned as a shortcut (PIL, bilinear with antialiasing);
2. harmonise the intensities to one canonical range. The shipped models use
   ``stretch``: the image's own 1st..99th percentile range stretched to 0..255
   (a 256-entry lookup table from the 8-bit histogram), which removes the
   source's overall brightness, contrast and bit depth. Two alternatives were
   measured in the ablation (``docs/MODELS.md``) and are kept for it:
   ``equalize`` (global histogram equalisation: invariant to any monotonic
   window/gamma change, but it amplifies noise in the dark lung fields and
   lost on held-out and changed-look CT) and ``match`` (histogram matching to
   a reference cumulative histogram of the training images). What the model
   must not learn from the source's look (noise, blur, resolution, JPEG,
   window, gamma) is randomised in training (``training.look``);
3. replicate the grey channel to three channels (ImageNet backbone).

The cost is one uint8 resize, one 256-bin histogram and one table lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

INPUT_SIZE = 224
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0
HARMONISATIONS = ("stretch", "equalize", "match")
DEFAULT_HARMONISATION = "stretch"


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """Any numeric greyscale image in 0..255 -> uint8 (rounded, clipped); uint8 passes through."""
    values = np.asarray(gray)
    if values.dtype == np.uint8:
        return values
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def resize_uint8(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size, size), bilinear with antialiasing."""
    image = Image.fromarray(to_uint8(gray), "L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def compute_percentiles(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile`` (linear method), from a 256-bin histogram when the pixels are 8-bit."""
    as_bytes = values if values.dtype == np.uint8 else values.astype(np.uint8)
    if as_bytes is not values and not np.array_equal(as_bytes, values):
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


def compute_cdf(pixels: np.ndarray) -> np.ndarray:
    """Cumulative share of pixels at or below each of the 256 grey levels (float64, ends at 1)."""
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    return np.cumsum(counts) / max(pixels.size, 1)


def build_equalize_lut(pixels: np.ndarray) -> np.ndarray:
    """Histogram equalisation table: grey level -> 255 * (midpoint CDF rank), uint8."""
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    cumulative = np.cumsum(counts)
    midpoint = (cumulative - counts / 2.0) / max(pixels.size, 1)  # ties share their mid rank
    return np.clip(midpoint * 255.0 + 0.5, 0, 255).astype(np.uint8)


def build_stretch_lut(pixels: np.ndarray) -> np.ndarray:
    """1st..99th percentile of the image stretched to 0..255, as a table."""
    low, high = compute_percentiles(pixels, (LOW_PERCENTILE, HIGH_PERCENTILE))
    levels = np.arange(256, dtype=np.float32)
    if high - low < 1e-6:
        return np.zeros(256, dtype=np.uint8)
    lut: np.ndarray = np.clip((levels - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    return lut


def build_match_lut(pixels: np.ndarray, reference_cdf: Sequence[float] | np.ndarray) -> np.ndarray:
    """Histogram matching: each level's mid CDF rank mapped through the inverse of ``reference_cdf``."""
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    midpoint = (np.cumsum(counts) - counts / 2.0) / max(pixels.size, 1)
    reference = np.asarray(reference_cdf, dtype=np.float64)
    lut: np.ndarray = np.clip(np.interp(midpoint, reference, np.arange(256.0)) + 0.5, 0, 255).astype(np.uint8)
    return lut


def harmonise(square: np.ndarray, method: str = DEFAULT_HARMONISATION,
              reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """uint8 image -> uint8 image with a canonical intensity distribution (see module docstring)."""
    if method == "equalize":
        lut = build_equalize_lut(square)
    elif method == "stretch":
        lut = build_stretch_lut(square)
    elif method == "match":
        if reference_cdf is None:
            raise ValueError("harmonisation 'match' needs the model's reference_cdf")
        lut = build_match_lut(square, reference_cdf)
    else:
        raise ValueError(f"unknown harmonisation {method!r}; known: {HARMONISATIONS}")
    harmonised: np.ndarray = lut[square]
    return harmonised


def to_model_square(gray: np.ndarray, size: int = INPUT_SIZE, method: str = DEFAULT_HARMONISATION,
                    reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Greyscale image (H, W) in 0..255 -> harmonised uint8 (size, size)."""
    values = np.asarray(gray)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale array, got shape {values.shape}")
    return harmonise(resize_uint8(values, size), method, reference_cdf)


def to_model_input(gray: np.ndarray, size: int = INPUT_SIZE, method: str = DEFAULT_HARMONISATION,
                   reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Greyscale image (H, W) in 0..255 -> float32 (size, size, 3) in [0, 255]."""
    square = to_model_square(gray, size, method, reference_cdf)
    return np.repeat(square[:, :, None].astype(np.float32), 3, axis=2)
