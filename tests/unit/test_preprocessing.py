"""The shared preprocessing: histogram percentiles equal numpy's, output shape and range."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diagnostics.preprocessing import compute_percentiles, to_model_input


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
    gray = np.tile(np.arange(300, dtype=np.float32), (120, 1))
    tensor = to_model_input(gray, 96)
    assert tensor.shape == (96, 96, 3) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() < 1.0 and 254.0 < tensor.max() <= 255.0  # stretched to the full range
    assert np.array_equal(tensor[:, :, 0], tensor[:, :, 2])
    assert not to_model_input(np.full((50, 50), 7.0)).any()
