"""CAM arithmetic and heatmap rendering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diagnostics.heatmap import (
    COLOUR_MAP,
    HEATMAP_MAX_SIDE,
    MAX_OPACITY,
    compute_cam,
    encode_rgba_png,
    get_display_size,
    render_heatmap_png,
    render_image_png,
)


def test_cam_hand_worked() -> None:
    features = np.zeros((2, 2, 3), np.float32)
    features[0, 0] = (1.0, 2.0, 0.0)
    features[1, 1] = (0.0, 0.0, 4.0)
    cam = compute_cam(features, np.array([0.5, -1.0, 0.25], np.float32), bias=0.1)
    # (1*0.5 + 2*-1 + 0.1) = -1.4 ; 0.1 ; 0.1 ; (4*0.25 + 0.1) = 1.1
    np.testing.assert_allclose(cam, [[-1.4, 0.1], [0.1, 1.1]], atol=1e-6)
    assert float(cam.mean()) == pytest.approx(float(features.mean(axis=(0, 1)) @ [0.5, -1.0, 0.25] + 0.1))


def test_display_size_keeps_aspect_and_caps_the_longer_side() -> None:
    assert get_display_size(64, 64, 96) == (64, 64)
    assert get_display_size(1024, 512, 96) == (96, 48)
    assert get_display_size(400, 2000, 512) == (102, 512)


def decode_rgba(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGBA"
    return np.asarray(image, dtype=np.int32)


def test_hot_region_is_red_and_opaque_where_the_cam_is_high_and_clear_where_it_is_low() -> None:
    cam = np.full((4, 4), -12.0, np.float32)
    cam[0, 3] = 12.0  # top-right cell: strong evidence
    heatmap = decode_rgba(render_heatmap_png(cam, 400, 300))
    assert heatmap.shape == (48, HEATMAP_MAX_SIDE, 4)  # the image's 4:3 aspect ratio
    red, green, blue, alpha = heatmap[1, -2]
    assert (red, green, blue) == tuple(COLOUR_MAP[255]) and alpha == round(255 * MAX_OPACITY)
    assert heatmap[-2, 1, 3] == 0  # no evidence: fully transparent
    assert tuple(heatmap[-2, 1, :3]) == tuple(COLOUR_MAP[0])


def test_flat_cam_has_no_hot_spot_and_its_strength_sets_the_opacity() -> None:
    heatmap = decode_rgba(render_heatmap_png(np.zeros((7, 7), np.float32), 256, 256))
    assert np.all(heatmap[:, :, 3] == round(round(MAX_OPACITY * 128) * 0.5))  # heat 0.5, sigmoid(0) = 0.5
    assert len(np.unique(heatmap[:, :, 0])) == 1


def test_confident_image_still_shows_where_the_evidence_is() -> None:
    cam = np.full((4, 4), 6.0, np.float32)  # every location says "affected"...
    cam[2, 1] = 9.0  # ...one says it most
    heatmap = decode_rgba(render_heatmap_png(cam, 256, 256))
    alpha = heatmap[:, :, 3]
    assert alpha.max() > 0.8 * MAX_OPACITY * 255 and alpha.min() == 0  # bilinear upsampling softens the peak
    hottest = np.unravel_index(np.argmax(alpha), alpha.shape)
    assert hottest[0] * 4 // heatmap.shape[0] == 2 and hottest[1] * 4 // heatmap.shape[1] == 1


def test_display_picture_of_a_dicom_image() -> None:
    gray = np.tile(np.linspace(0, 255, 1024, dtype=np.float32), (768, 1))
    image = Image.open(io.BytesIO(render_image_png(gray)))
    assert image.mode == "L" and image.size == (512, 384)
    row = np.asarray(image, dtype=np.int32)[200]
    assert row[0] <= 1 and row[-1] >= 254 and np.all(np.diff(row) >= 0)


def test_colour_map_runs_from_blue_to_red() -> None:
    assert COLOUR_MAP.shape == (256, 3)
    assert COLOUR_MAP[0, 2] > COLOUR_MAP[0, 0] and COLOUR_MAP[255, 0] > COLOUR_MAP[255, 2]


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (48, 64)])
def test_the_direct_png_writer_round_trips_through_pillow(shape: tuple[int, int]) -> None:
    rgba = np.random.default_rng(shape[1]).integers(0, 256, (*shape, 4), dtype=np.uint8)
    assert np.array_equal(decode_rgba(encode_rgba_png(rgba)), rgba)
