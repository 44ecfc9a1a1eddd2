"""A cheap check that a decoded image is plausibly a chest image of the declared modality.

This is not a classifier. It refuses images that are *plainly* wrong, using
image statistics of the decoded 8-bit-range greyscale image (colour images are
already refused by the decoder with ``not-greyscale``; DICOM files are also
checked by their Modality and BodyPartExamined tags in the decoder):

``not-a-chest-image``
    - near-uniform image: standard deviation below 8 grey levels (blank,
      black or white uploads);
    - fewer than 32 distinct grey levels (line art, text, masks, QR codes);
    - aspect ratio above 2.5 : 1 (banners, whole-body scans, strips).

``wrong-modality`` (the mid-tone test)
    The share of pixels with grey level 100..200. A radiograph is a projection,
    so tissue thicknesses add up to a continuous range of mid-tones; a CT slice
    shown in a lung window is bimodal (air and lung dark, soft tissue and bone
    near white), so mid-tones are rare.
    - declared ``ct`` but more than 20 % mid-tones -> looks like a radiograph
      (or a CT exported in a soft-tissue window, which the model was not
      trained on);
    - declared ``xray`` but fewer than 15 % mid-tones -> looks like a CT slice.

Measured on every image in the shared data folder (see
``tests/unit/test_diagnostics_plausibility.py``): CT 2.2 %..7.6 % mid-tones,
X-ray 28.9 %..82.9 %; the lung-windowed pydicom CT samples 4.3 % and 6.9 %.

Limits: a greyscale photograph, an inverted radiograph, a cropped chest image
or an X-ray of another body part passes; a strongly post-processed image may
be refused. The thresholds are module constants so they can be revisited when
new data arrive.
"""

from __future__ import annotations

import numpy as np

from diagnostics.imaging import ImageError

MIN_STD = 8.0
MIN_GREY_LEVELS = 32
MAX_ASPECT_RATIO = 2.5
MIDTONE_LOW = 100.0
MIDTONE_HIGH = 200.0
CT_MAX_MIDTONE_FRACTION = 0.20
XRAY_MIN_MIDTONE_FRACTION = 0.15


def compute_histogram(pixels: np.ndarray) -> np.ndarray:
    """Counts of the 256 grey levels (values truncated to whole levels)."""
    return np.bincount(np.clip(pixels, 0, 255).astype(np.uint8).ravel(), minlength=256)


def compute_midtone_fraction(pixels: np.ndarray, histogram: np.ndarray | None = None) -> float:
    """Share of pixels whose whole grey level is in [100, 200]."""
    counts = compute_histogram(pixels) if histogram is None else histogram
    return float(counts[int(MIDTONE_LOW):int(MIDTONE_HIGH) + 1].sum() / counts.sum())


def validate_chest_image(pixels: np.ndarray, modality: str) -> None:
    """Raise ``not-a-chest-image`` or ``wrong-modality`` for a plainly wrong image."""
    height, width = pixels.shape
    aspect = max(height, width) / min(height, width)
    if aspect > MAX_ASPECT_RATIO:
        raise ImageError("not-a-chest-image",
                         f"image is {width}x{height} (aspect {aspect:.1f}:1); chest images are close to square")
    std = float(pixels.std())
    if std < MIN_STD:
        raise ImageError("not-a-chest-image", f"image is almost uniform (standard deviation {std:.1f}); "
                                              "it looks blank")
    histogram = compute_histogram(pixels)
    levels = int(np.count_nonzero(histogram))
    if levels < MIN_GREY_LEVELS:
        raise ImageError("not-a-chest-image", f"image has only {levels} grey levels; "
                                              "it looks like a drawing, text or a mask, not a radiological image")
    midtones = compute_midtone_fraction(pixels, histogram)
    if modality == "ct" and midtones > CT_MAX_MIDTONE_FRACTION:
        raise ImageError("wrong-modality", f"{midtones:.0%} of pixels are mid-grey, as in a radiograph; a CT slice "
                                           "in a lung window has few. Check the declared modality, or export "
                                           "the CT in a lung window")
    if modality == "xray" and midtones < XRAY_MIN_MIDTONE_FRACTION:
        raise ImageError("wrong-modality", f"only {midtones:.0%} of pixels are mid-grey, as in a CT slice; "
                                           "a chest radiograph has many. Check the declared modality")
