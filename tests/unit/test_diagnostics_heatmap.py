"""CAM arithmetic and heatmap rendering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diagnostics.heatmap import COLOUR_MAP, MAX_HEATMAP_SIDE, compute_cam, get_display_size, render_heatmap_png


def test_cam_hand_worked() -> None:
    features = np.zeros((2, 2, 3), np.float32)
    features[0, 0] = (1.0, 2.0, 0.0)
    features[1, 1] = (0.0, 0.0, 4.0)
    cam = compute_cam(features, np.array([0.5, -1.0, 0.25], np.float32), bias=0.1)
    # (1*0.5 + 2*-1 + 0.1) = -1.4 ; 0.1 ; 0.1 ; (4*0.25 + 0.1) = 1.1
    np.testing.assert_allclose(cam, [[-1.4, 0.1], [0.1, 1.1]], atol=1e-6)
    assert float(cam.mean()) == pytest.approx(float(features.mean(axis=(0, 1)) @ [0.5, -1.0, 0.25] + 0.1))


def test_display_size_keeps_aspect_and_caps_the_longer_side() -> None:
    assert get_display_size(256, 256) == (256, 256)
    assert get_display_size(1024, 512) == (MAX_HEATMAP_SIDE, 256)
    assert get_display_size(400, 2000) == (102, MAX_HEATMAP_SIDE)


def render(gray: np.ndarray, cam: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_heatmap_png(gray, cam))).convert("RGB"), dtype=np.int32)


def test_hot_region_is_red_where_the_cam_is_high_and_clear_where_it_is_low() -> None:
    gray = np.full((300, 400), 100.0, np.float32)
    cam = np.full((4, 4), -12.0, np.float32)
    cam[0, 3] = 12.0  # top-right cell: strong evidence
    image = render(gray, cam)
    assert image.shape == (300, 400, 3)
    red, green, blue = image[2, 397]
    assert red > 110 and max(green, blue) < 50  # full heat: jet's dark red, 60 % opaque over grey 100
    np.testing.assert_allclose(image[280, 20], (100, 100, 100), atol=2)  # no evidence: the image shows through


def test_colour_map_runs_from_blue_to_red() -> None:
    assert COLOUR_MAP.shape == (256, 3)
    assert COLOUR_MAP[0, 2] > COLOUR_MAP[0, 0] and COLOUR_MAP[255, 0] > COLOUR_MAP[255, 2]
