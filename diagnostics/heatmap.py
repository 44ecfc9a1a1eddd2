"""Class activation map (CAM) heatmaps from the model's last convolutional features.

For a head ``logit = mean_hw(features) . w + b`` the CAM is
``cam[y, x] = features[y, x] . w + b``: the logit each location would give on
its own, and its mean over the grid is exactly the model's logit. No
TensorFlow and no gradients are needed.

Rendering (cheap on purpose: it runs for every request): the colour shows
*where* the evidence is, relative to the rest of the image:
``heat = (cam - min) / (max - min)`` (0.5 everywhere for a flat map), so a
confident image is not simply red all over. The opacity shows *how strong*
the strongest evidence is: ``alpha = 0.6 * heat * sigmoid(max(cam))``, so an
image with no location pointing to "affected" gives a faint map. The heat is
upsampled bilinearly to a small image with the aspect ratio of the uploaded
image (at most 64 px on its longer side; the model saw the whole image
stretched to a square, so the grid maps onto the whole image) and coloured
with a blue-to-red "jet" map. The result is an RGBA PNG that the page stretches over the
image it shows (browsers smooth it). For DICOM uploads, which browsers cannot
show, :func:`render_image_png` gives the windowed greyscale picture to put
under it.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

HEATMAP_MAX_SIDE = 64
DISPLAY_MAX_SIDE = 512
MAX_OPACITY = 0.6
PNG_COMPRESS_LEVEL = 1


def _build_colour_map() -> np.ndarray:
    """256 x 3 uint8 'jet' map: dark blue -> cyan -> yellow -> dark red."""
    position = np.linspace(0.0, 1.0, 256)
    red = np.clip(1.5 - np.abs(4.0 * position - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * position - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * position - 1.0), 0.0, 1.0)
    return np.round(np.stack([red, green, blue], axis=1) * 255.0).astype(np.uint8)


COLOUR_MAP = _build_colour_map()
# heat level (0..255) -> RGBA, looked up with one numpy indexing per heatmap
RGBA_TABLE = np.concatenate(
    [COLOUR_MAP, np.round(MAX_OPACITY * np.arange(256))[:, None].astype(np.uint8)], axis=1)


def compute_cam(features: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """features [h, w, C] . weights [C] + bias -> per-location logits [h, w]."""
    cam: np.ndarray = features.astype(np.float32, copy=False) @ weights.astype(np.float32, copy=False)
    cam += np.float32(bias)
    return cam


def get_display_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def render_heatmap_png(cam: np.ndarray, image_width: int, image_height: int,
                       max_side: int = HEATMAP_MAX_SIDE) -> bytes:
    """RGBA PNG: relative CAM as colour, strongest evidence as opacity, with the image's aspect ratio."""
    heat, strength = compute_heat(cam)
    size = get_display_size(image_width, image_height, max_side)
    if size != (heat.shape[1], heat.shape[0]):
        heat = np.asarray(Image.fromarray(heat, "F").resize(size, Image.Resampling.BILINEAR))
    levels = np.clip(heat * 255.0 + 0.5, 0, 255)
    rgba = RGBA_TABLE[levels.astype(np.uint8)]
    rgba[:, :, 3] = np.round(rgba[:, :, 3] * strength).astype(np.uint8)
    return encode_rgba_png(rgba)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_rgba_png(rgba: np.ndarray) -> bytes:
    """uint8 (h, w, 4) -> PNG bytes, written directly (no filter, zlib level 1).

    The heatmap is at most 64 px a side (7 x 7 for most uploads): at that size
    Pillow's encoder set-up costs more than the encoding, and this is ~10x cheaper.
    """
    height, width = rgba.shape[:2]
    rows = np.empty((height, 1 + 4 * width), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none" for every row
    rows[:, 1:] = np.ascontiguousarray(rgba, dtype=np.uint8).reshape(height, 4 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)) + _png_chunk(b"IEND", b""))


def compute_heat(cam: np.ndarray) -> tuple[np.ndarray, float]:
    """(relative heat 0..1 per location, strength = sigmoid of the strongest location's logit)."""
    values = cam.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    heat = np.full_like(values, 0.5) if high - low < 1e-6 else (values - low) / (high - low)
    strength = 1.0 / (1.0 + float(np.exp(-np.clip(high, -30.0, 30.0))))
    return heat.astype(np.float32), strength


def render_image_png(gray: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """Greyscale PNG (at most ``max_side`` px) of a decoded image, for inputs a browser cannot show."""
    height, width = gray.shape
    image = Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8), "L")
    size = get_display_size(width, height, max_side)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return _encode_png(image)
