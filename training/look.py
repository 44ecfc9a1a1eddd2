"""Randomise an image's "look" (numpy + PIL, no TensorFlow), before the shared preprocessing.

A model that sees one hospital's window, gamma, noise, sharpness, resolution
and JPEG export learns them as cues. Each call of :func:`vary_look` draws a new
look for a decoded greyscale image (float 0..255):

- window / contrast: a random sub-range of grey levels stretched to 0..255 and
  clipped (another window or level), or the range compressed (a flat export);
- gamma 0.6..1.6;
- resolution: down-scaled to 35..100 % and back up;
- blur: Gaussian, sigma 0..1.5 px (at 256 px);
- noise: Gaussian, sigma 0..10 grey levels;
- JPEG re-compression, quality 30..95, half of the time;
- small geometry: rotation +-10 degrees, scale 0.9..1.1, shift +-6 %, and a
  left-right mirror when ``flip`` (CT only; a mirrored chest radiograph is
  anatomically wrong).

Also :func:`foreign_look`, a fixed (seeded) strong change used to stress-test
a model on a look it was not trained on.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def _apply_intensity(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.7:
        low = rng.uniform(0, 70)
        high = rng.uniform(180, 255)
        values = np.clip((values - low) * (255.0 / (high - low)), 0, 255)
    else:
        low = rng.uniform(0, 60)
        high = rng.uniform(170, 255)
        values = low + values * ((high - low) / 255.0)
    gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    return 255.0 * (values / 255.0) ** gamma


def vary_look(gray: np.ndarray, rng: np.random.Generator, flip: bool = False) -> np.ndarray:
    """One random new look of a decoded greyscale image; returns uint8 (H', W')."""
    values = _apply_intensity(np.asarray(gray, dtype=np.float32), rng)
    image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L")
    width, height = image.size
    if flip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-10, 10)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.06, 0.06, size=2) * (width, height)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, translate=tuple(shift))
    if abs(scale - 1) > 1e-3:
        crop_w, crop_h = width / scale, height / scale
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        image = image.transform((width, height), Image.Transform.EXTENT, (left, top, left + crop_w, top + crop_h),
                                Image.Resampling.BILINEAR)
    factor = rng.uniform(0.35, 1.0)
    if factor < 0.97:
        small = (max(16, int(width * factor)), max(16, int(height * factor)))
        image = image.resize(small, Image.Resampling.BILINEAR).resize((width, height), Image.Resampling.BILINEAR)
    sigma = rng.uniform(0, 1.5) * max(width, height) / 256.0
    if sigma > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(sigma))
    values = np.asarray(image, dtype=np.float32)
    noise = rng.uniform(0, 10)
    if noise > 0.5:
        values = values + rng.normal(0, noise, values.shape)
    out = np.clip(values + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(out, "L").save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
        out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    return out


def foreign_look(gray: np.ndarray, index: int, seed: int = 20261202) -> np.ndarray:
    """A fixed strong look change (per image ``index``) for stress tests: window + gamma + noise + blur."""
    rng = np.random.default_rng([seed, index])
    values: np.ndarray = np.asarray(gray, dtype=np.float32)
    low, high = rng.uniform(20, 60), rng.uniform(170, 230)
    values = np.clip((values - low) * (255.0 / (high - low)), 0, 255)
    gamma = float(rng.choice([0.6, 1.6]))
    values = 255.0 * (values / 255.0) ** gamma
    image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L")
    image = image.filter(ImageFilter.GaussianBlur(0.8 * max(image.size) / 256.0))
    values = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (image.size[1], image.size[0]))
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)
