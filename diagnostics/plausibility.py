"""Cheap checks that a decoded image can be a radiological image at all (before the model runs).

These refuse only images that are *plainly* unusable, with ``not-a-chest-image``
(colour images are already refused by the decoder with ``not-greyscale``;
DICOM files are also checked by their Modality and BodyPartExamined tags):

- near-uniform image: standard deviation below 8 grey levels (blank, black or
  white uploads);
- fewer than 32 distinct grey levels (line art, text, masks, QR codes);
- aspect ratio above 2.5 : 1 (banners, whole-body scans, strips).

Whether the image is a chest CT slice, a chest radiograph or something else,
and how far it is from the images the model was validated on, is decided after
inference by the learned gate in :mod:`diagnostics.gate` (it replaced the
hand-set mid-tone rule, which did not hold on other hospitals' images, issue 10).
``modality`` is accepted for compatibility and not used.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from diagnostics.imaging import ImageError

MIN_STD = 8.0
MIN_GREY_LEVELS = 32
MAX_ASPECT_RATIO = 2.5


def compute_histogram(pixels: np.ndarray) -> np.ndarray:
    """Counts of the 256 grey levels (values truncated to whole levels; uint8 is counted directly).

    Counted by Pillow (one C pass over the bytes), faster than ``np.bincount``,
    which first widens every pixel to a 64-bit index.
    """
    values = pixels if pixels.dtype == np.uint8 else np.clip(pixels, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(np.ascontiguousarray(values), "L").histogram())


def compute_histogram_std(histogram: np.ndarray) -> float:
    """Standard deviation of the grey levels counted in ``histogram``."""
    levels = np.arange(histogram.size, dtype=np.float64)
    total = float(histogram.sum())
    mean = float(histogram @ levels) / total
    return float(np.sqrt(max(float(histogram @ (levels - mean) ** 2) / total, 0.0)))


def validate_chest_image(pixels: np.ndarray, modality: str | None = None,
                         histogram: np.ndarray | None = None) -> None:
    """Raise ``not-a-chest-image`` for a plainly unusable image (blank, posterised, strip-shaped).

    ``histogram`` (from :func:`compute_histogram`) may be passed in when the caller has it already.
    """
    height, width = pixels.shape
    aspect = max(height, width) / min(height, width)
    if aspect > MAX_ASPECT_RATIO:
        raise ImageError("not-a-chest-image",
                         f"image is {width}x{height} (aspect {aspect:.1f}:1); chest images are close to square")
    counts = compute_histogram(pixels) if histogram is None else histogram
    std = compute_histogram_std(counts)
    if std < MIN_STD:
        raise ImageError("not-a-chest-image", f"image is almost uniform (standard deviation {std:.1f}); "
                                              "it looks blank")
    levels = int(np.count_nonzero(counts))
    if levels < MIN_GREY_LEVELS:
        raise ImageError("not-a-chest-image", f"image has only {levels} grey levels; "
                                              "it looks like a drawing, text or a mask, not a radiological image")
