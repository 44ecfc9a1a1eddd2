"""Class activation map (CAM) heatmaps from the model's last convolutional features.

For a head ``logit = mean_hw(features) . w + b`` the CAM is
``cam[y, x] = features[y, x] . w + b``: the logit each location would give on
its own, and its mean over the grid is exactly the model's logit. No
TensorFlow and no gradients are needed.

Rendering: ``sigmoid(cam)`` (0..1, 0.5 = no evidence either way) is upsampled
bilinearly to the displayed image (the model saw the whole image stretched to
a square, so the grid maps onto the whole image), coloured with a blue-to-red
map and blended over the greyscale image with opacity ``0.6 * heat``, so
regions with little evidence for "affected" stay nearly clear. The result is
an RGB PNG at most 512 px on its longer side.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_HEATMAP_SIDE = 512
MAX_OPACITY = 0.6
PNG_COMPRESS_LEVEL = 1


def _build_colour_map() -> np.ndarray:
    """256 x 3 uint8 'jet'-like map: blue -> cyan -> yellow -> red."""
    position = np.linspace(0.0, 1.0, 256)
    red = np.clip(1.5 - np.abs(4.0 * position - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * position - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * position - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=1) * 255.0).astype(np.float32)


COLOUR_MAP = _build_colour_map()


def compute_cam(features: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """features [h, w, C] . weights [C] + bias -> per-location logits [h, w]."""
    return (features.astype(np.float32) @ weights.astype(np.float32) + np.float32(bias)).astype(np.float32)


def get_display_size(width: int, height: int, max_side: int = MAX_HEATMAP_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_heatmap_png(gray: np.ndarray, cam: np.ndarray, max_side: int = MAX_HEATMAP_SIDE) -> bytes:
    """Blend the CAM over the greyscale image (0..255) and encode it as a PNG."""
    height, width = gray.shape
    size = get_display_size(width, height, max_side)
    base = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    if base.size != size:
        base = base.resize(size, Image.Resampling.BILINEAR)
    heat_grid = 1.0 / (1.0 + np.exp(-np.clip(cam, -30.0, 30.0)))
    heat = np.asarray(Image.fromarray(heat_grid.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)
    colours = COLOUR_MAP[(heat * 255.0).astype(np.uint8)]
    opacity = (MAX_OPACITY * heat)[:, :, None]
    grey = np.asarray(base, dtype=np.float32)[:, :, None]
    blended = grey * (1.0 - opacity) + colours * opacity
    buffer = io.BytesIO()
    Image.fromarray(blended.astype(np.uint8), "RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
