"""Colour to grey without full-size float copies: refuse colour photographs, average the channels.

Radiographs and CT slices are grey; a colour upload is converted strip by strip
so that a large RGB image never exists as a float array of three channels
(12 bytes a pixel): the per-pixel arithmetic is the same as on the whole image,
so the result is identical.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diagnostics.decode_limits import ImageError

COLOUR_CHROMA_LIMIT = 12.0
COLOUR_FRACTION_LIMIT = 0.05
STRIP_PIXELS = 1 << 20  # about one megapixel per strip


def check_greyscale(rgb: np.ndarray) -> None:
    """Refuse colour photographs: radiographs and CT slices are grey.

    A few coloured annotation marks are tolerated; a colour image is one where
    more than 5% of pixels have a chroma (max - min channel) above 12.
    """
    height, width = rgb.shape[:2]
    _check_colour_fraction(_count_coloured(rgb), height * width)


def _count_coloured(rgb: np.ndarray) -> int:
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    return int(np.count_nonzero(chroma > COLOUR_CHROMA_LIMIT))


def _check_colour_fraction(coloured: int, total: int) -> None:
    fraction = coloured / total if total else 0.0
    if fraction > COLOUR_FRACTION_LIMIT:
        raise ImageError(
            "not-greyscale",
            f"{fraction:.0%} of pixels are coloured; chest X-rays and CT slices are greyscale images",
        )


def strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


def grey_from_strips(height: int, width: int, read_strip: Callable[[int, int], np.ndarray],
                     dtype: type[np.floating]) -> np.ndarray:
    """Mean of the channels, strip by strip; ``read_strip(top, bottom)`` gives those rows as H x W x 3.

    ``dtype`` is the dtype of the mean the whole-image code computed: float32 for
    float32 RGB (decoded PNG/JPEG), float64 for integer samples (DICOM).
    """
    grey = np.empty((height, width), dtype=dtype)
    coloured, step = 0, strip_rows(width)
    for top in range(0, height, step):
        bottom = min(height, top + step)
        strip = read_strip(top, bottom)
        coloured += _count_coloured(strip.astype(np.float32, copy=False))
        grey[top:bottom] = strip.mean(axis=2)
    _check_colour_fraction(coloured, height * width)
    return grey


def stretch(values: np.ndarray) -> np.ndarray:
    """Map the full range of ``values`` linearly to 0..255 (constant -> 0), as float32."""
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high):
        raise ImageError("corrupt-image", "the image contains non-finite pixel values")
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = values - low
    scaled *= scale
    # (high - low) * (255 / (high - low)) can round to just above 255.
    return np.clip(scaled, 0.0, 255.0, out=scaled).astype(np.float32, copy=False)
