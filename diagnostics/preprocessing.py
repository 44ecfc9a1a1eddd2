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
   a reference cumulative histogram of the training images) and ``clahe``
   (contrast-limited adaptive histogram equalisation on an 8 x 8 tile grid,
   numpy only: local contrast, less noise amplification than ``equalize``).
   What the model
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
HARMONISATIONS = ("stretch", "equalize", "match", "clahe")
# CLAHE: an 8 x 8 grid of tiles, each tile's histogram clipped at CLAHE_CLIP x its mean bin count
CLAHE_TILES = 8
CLAHE_CLIP = 2.0
DEFAULT_HARMONISATION = "stretch"


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """Any numeric greyscale image in 0..255 -> uint8 (rounded, clipped); uint8 passes through."""
    values = np.asarray(gray)
    if values.dtype == np.uint8:
        return values
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def resize_image(gray: np.ndarray, size: int) -> Image.Image:
    """uint8 (H, W) -> PIL 8-bit image (size, size), bilinear with antialiasing."""
    image = Image.fromarray(to_uint8(gray), "L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def resize_uint8(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size, size), bilinear with antialiasing."""
    return np.asarray(resize_image(gray, size))


def compute_percentiles(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile`` (linear method), from a 256-bin histogram when the pixels are 8-bit."""
    as_bytes = values if values.dtype == np.uint8 else values.astype(np.uint8)
    if as_bytes is not values and not np.array_equal(as_bytes, values):
        low, high = np.percentile(values, percentiles)
        return float(low), float(high)
    return compute_percentiles_from_counts(np.bincount(as_bytes.ravel(), minlength=256), percentiles)


def compute_cdf(pixels: np.ndarray) -> np.ndarray:
    """Cumulative share of pixels at or below each of the 256 grey levels (float64, ends at 1)."""
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    return np.cumsum(counts) / max(pixels.size, 1)


def build_equalize_lut(pixels: np.ndarray) -> np.ndarray:
    """Histogram equalisation table: grey level -> 255 * (midpoint CDF rank), uint8."""
    return build_equalize_lut_from_counts(np.bincount(pixels.ravel(), minlength=256))


def build_equalize_lut_from_counts(histogram: np.ndarray) -> np.ndarray:
    counts = np.asarray(histogram, dtype=np.float64)
    cumulative = np.cumsum(counts)
    midpoint = (cumulative - counts / 2.0) / max(float(cumulative[-1]), 1.0)  # ties share their mid rank
    return np.clip(midpoint * 255.0 + 0.5, 0, 255).astype(np.uint8)


def compute_percentiles_from_counts(counts: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile`` (linear method) of 8-bit pixels given their 256-bin histogram."""
    cumulative = np.cumsum(counts)
    last = int(cumulative[-1]) - 1
    positions = last * np.asarray(percentiles, dtype=np.float64) / 100.0
    below = np.floor(positions)
    above = np.minimum(below + 1, last)
    low_values = np.searchsorted(cumulative, below, side="right")
    high_values = np.searchsorted(cumulative, above, side="right")
    values = low_values + (positions - below) * (high_values - low_values)
    return float(values[0]), float(values[1])


def build_stretch_lut(pixels: np.ndarray) -> np.ndarray:
    """1st..99th percentile of the image stretched to 0..255, as a table."""
    return build_stretch_lut_from_counts(np.bincount(pixels.ravel(), minlength=256))


_LEVELS = np.arange(256, dtype=np.float32)


def build_stretch_lut_from_counts(counts: np.ndarray) -> np.ndarray:
    """The stretch table from the image's 256-bin histogram."""
    low, high = compute_percentiles_from_counts(counts, (LOW_PERCENTILE, HIGH_PERCENTILE))
    levels = _LEVELS
    if high - low < 1e-6:
        return np.zeros(256, dtype=np.uint8)
    lut: np.ndarray = np.clip((levels - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    return lut


def build_match_lut(pixels: np.ndarray, reference_cdf: Sequence[float] | np.ndarray) -> np.ndarray:
    """Histogram matching: each level's mid CDF rank mapped through the inverse of ``reference_cdf``."""
    return build_match_lut_from_counts(np.bincount(pixels.ravel(), minlength=256), reference_cdf)


def build_match_lut_from_counts(histogram: np.ndarray, reference_cdf: Sequence[float] | np.ndarray) -> np.ndarray:
    counts = np.asarray(histogram, dtype=np.float64)
    midpoint = (np.cumsum(counts) - counts / 2.0) / max(float(counts.sum()), 1.0)
    reference = np.asarray(reference_cdf, dtype=np.float64)
    lut: np.ndarray = np.clip(np.interp(midpoint, reference, np.arange(256.0)) + 0.5, 0, 255).astype(np.uint8)
    return lut


def build_clahe_luts(pixels: np.ndarray, tiles: int = CLAHE_TILES, clip: float = CLAHE_CLIP) -> np.ndarray:
    """One clipped-histogram equalisation table per tile: float32 (tiles * tiles, 256) in 0..255."""
    height, width = pixels.shape
    tile_rows = (np.arange(height) * tiles) // height
    tile_cols = (np.arange(width) * tiles) // width
    tile_index = (tile_rows[:, None] * tiles + tile_cols[None, :]).astype(np.intp)
    counts = np.bincount((tile_index * 256 + pixels).ravel(), minlength=tiles * tiles * 256)
    counts = counts.reshape(tiles * tiles, 256).astype(np.float32)
    per_tile = counts.sum(axis=1, keepdims=True)
    limit = np.maximum(clip * per_tile / 256.0, 1.0)
    excess = np.maximum(counts - limit, 0.0).sum(axis=1, keepdims=True)
    clipped = np.minimum(counts, limit) + excess / 256.0  # the clipped excess spread over every level
    luts: np.ndarray = np.cumsum(clipped, axis=1) * (255.0 / np.maximum(per_tile, 1.0))
    return luts


def _clahe_axis(length: int, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel along one axis: the two nearest tile centres and the weight of the second."""
    position = (np.arange(length) + 0.5) * tiles / length - 0.5
    first = np.clip(np.floor(position), 0, tiles - 1).astype(np.intp)
    second = np.minimum(first + 1, tiles - 1)
    weight = np.clip(position - first, 0.0, 1.0).astype(np.float32)
    return first, second, weight


def apply_clahe(pixels: np.ndarray, tiles: int = CLAHE_TILES, clip: float = CLAHE_CLIP) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 image (bilinear between tile tables)."""
    luts = build_clahe_luts(pixels, tiles, clip).ravel()
    rows0, rows1, row_weight = _clahe_axis(pixels.shape[0], tiles)
    cols0, cols1, col_weight = _clahe_axis(pixels.shape[1], tiles)
    level = pixels.astype(np.intp)

    def lookup(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        values: np.ndarray = luts[(rows[:, None] * tiles + cols[None, :]) * 256 + level]
        return values

    top = lookup(rows0, cols0) + (lookup(rows0, cols1) - lookup(rows0, cols0)) * col_weight[None, :]
    bottom = lookup(rows1, cols0) + (lookup(rows1, cols1) - lookup(rows1, cols0)) * col_weight[None, :]
    blended = top + (bottom - top) * row_weight[:, None]
    result: np.ndarray = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return result


def build_lut(counts: np.ndarray, method: str, reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The harmonisation table (uint8, 256 entries) of a global method, from the 256-bin histogram."""
    if method == "stretch":
        return build_stretch_lut_from_counts(counts)
    if method == "equalize":
        return build_equalize_lut_from_counts(counts)
    if method == "match":
        if reference_cdf is None:
            raise ValueError("harmonisation 'match' needs the model's reference_cdf")
        return build_match_lut_from_counts(counts, reference_cdf)
    raise ValueError(f"unknown harmonisation {method!r}; known: {HARMONISATIONS}")


def harmonise(square: np.ndarray, method: str = DEFAULT_HARMONISATION,
              reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """uint8 image -> uint8 image with a canonical intensity distribution (see module docstring)."""
    if method == "clahe":
        return apply_clahe(square)
    harmonised: np.ndarray = build_lut(np.bincount(square.ravel(), minlength=256), method, reference_cdf)[square]
    return harmonised


def harmonise_image(image: Image.Image, method: str = DEFAULT_HARMONISATION,
                    reference_cdf: Sequence[float] | np.ndarray | None = None) -> Image.Image:
    """:func:`harmonise` on a PIL 8-bit image: PIL's histogram and table lookup (C loops, no numpy copies)."""
    if method == "clahe":
        return Image.fromarray(apply_clahe(np.asarray(image)), "L")
    lut = build_lut(np.asarray(image.histogram()), method, reference_cdf)
    return image.point(lut.tolist())


def to_model_square(gray: np.ndarray, size: int = INPUT_SIZE, method: str = DEFAULT_HARMONISATION,
                    reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Greyscale image (H, W) in 0..255 -> harmonised uint8 (size, size)."""
    return np.asarray(_to_harmonised_image(gray, size, method, reference_cdf))


def to_model_input(gray: np.ndarray, size: int = INPUT_SIZE, method: str = DEFAULT_HARMONISATION,
                   reference_cdf: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Greyscale image (H, W) in 0..255 -> float32 (size, size, 3) in [0, 255].

    The grey channel is copied to three by PIL (``merge``) and converted to float32
    in one numpy pass: ~3x cheaper than broadcasting into a trailing axis of 3.
    """
    image = _to_harmonised_image(gray, size, method, reference_cdf)
    return np.asarray(Image.merge("RGB", (image, image, image)), dtype=np.float32)


def _to_harmonised_image(gray: np.ndarray, size: int, method: str,
                         reference_cdf: Sequence[float] | np.ndarray | None) -> Image.Image:
    values = np.asarray(gray)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale array, got shape {values.shape}")
    return harmonise_image(resize_image(values, size), method, reference_cdf)
