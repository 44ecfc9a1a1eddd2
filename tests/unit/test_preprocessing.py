"""The shared preprocessing: histogram percentiles equal numpy's, output shape and range, and the
harmonisation's point: a different window / gamma of the same image gives (almost) the same model input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diagnostics.preprocessing import (
    apply_clahe,
    compute_percentiles,
    harmonise,
    resize_uint8,
    to_model_input,
    to_model_square,
)


@settings(max_examples=200)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
       st.floats(0, 100), st.floats(0, 100))
def test_histogram_percentiles_equal_numpy_for_8_bit_pixels(pixels: np.ndarray, low: float, high: float) -> None:
    values = pixels.astype(np.float32)
    expected = np.percentile(values, [low, high])
    assert np.allclose(compute_percentiles(values, (low, high)), expected, rtol=0, atol=1e-6)


def test_non_integer_pixels_take_numpys_path() -> None:
    values = np.linspace(-1000.0, 400.5, 10_000, dtype=np.float32).reshape(100, 100)
    assert np.allclose(compute_percentiles(values, (1.0, 99.0)), np.percentile(values, [1.0, 99.0]))


def test_model_input_shape_and_range() -> None:
    gray = np.tile(np.arange(256, dtype=np.float32), (120, 1))
    tensor = to_model_input(gray, 96, "equalize")
    assert tensor.shape == (96, 96, 3) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() < 8.0 and 247.0 < tensor.max() <= 255.0  # equalised to the full range
    assert np.array_equal(tensor[:, :, 0], tensor[:, :, 2])
    flat = to_model_input(np.full((50, 50), 7.0), 96, "equalize")
    assert np.all(flat == flat[0, 0, 0])  # a flat image stays flat
    stretched = to_model_input(np.tile(np.arange(40, 200, dtype=np.float32), (120, 1)), 96)  # the default
    assert stretched.min() == 0.0 and stretched.max() == 255.0
    assert not to_model_input(np.full((50, 50), 7.0)).any()


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 60.0), st.floats(190.0, 255.0), st.floats(0.6, 1.6))
def test_equalised_input_hardly_depends_on_window_and_gamma(low: float, high: float, gamma: float) -> None:
    rng = np.random.default_rng(0)
    base = np.clip(rng.normal(128, 40, (64, 64)).cumsum(axis=1) / 8 % 255, 0, 255)
    base = np.repeat(np.repeat(base, 4, axis=0), 4, axis=1)  # smooth 256 x 256 image
    windowed = 255.0 * (np.clip((base - low) / (high - low), 0, 1) ** gamma)
    reference = to_model_square(base, 128, "equalize").astype(int)
    changed = to_model_square(windowed, 128, "equalize").astype(int)
    inside = (base > low + 2) & (base < high - 2)  # pixels the window did not clip
    inside_small = np.asarray(inside.reshape(128, 2, 128, 2).all(axis=(1, 3)))
    assert np.median(np.abs(reference - changed)[inside_small]) <= 4
    stretched = to_model_square(base, 128, "stretch").astype(int), to_model_square(windowed, 128, "stretch")
    assert np.median(np.abs(stretched[0] - stretched[1].astype(int))[inside_small]) >= \
        np.median(np.abs(reference - changed)[inside_small])


def test_clahe_matches_scikit_image_and_evens_out_a_dark_and_a_bright_half() -> None:
    from skimage import exposure

    rng = np.random.default_rng(3)
    image = np.clip(rng.normal(128, 30, (128, 128)), 0, 255).astype(np.uint8)
    image[:, :64] //= 4  # a dark left half: a global table cannot lift both halves
    ours = apply_clahe(image, tiles=8, clip=2.0).astype(np.float64)
    reference = exposure.equalize_adapthist(image, kernel_size=16, clip_limit=2.0 / 256, nbins=256) * 255.0
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.97  # skimage redistributes the clipped excess iteratively
    gap_before = float(image[:, 72:].mean()) - float(image[:, :56].mean())
    assert 0 < ours[:, 72:].mean() - ours[:, :56].mean() < 0.8 * gap_before  # the dark half was lifted locally
    square = to_model_square(image, 64, "clahe")
    assert square.dtype == np.uint8 and square.shape == (64, 64)
    assert np.array_equal(to_model_input(image, 64, "clahe")[:, :, 1], square)


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(8, 60), st.integers(8, 60))), st.sampled_from(["stretch", "equalize"]))
def test_pillow_path_equals_the_numpy_tables(pixels: np.ndarray, method: str) -> None:
    """The serving path (Pillow histogram + point) gives exactly the numpy reference (bincount + table)."""
    assert np.array_equal(to_model_square(pixels, 32, method), harmonise(resize_uint8(pixels, 32), method))
