"""Training-time augmentation, applied in the tf.data pipeline (not in the exported model).

Rotation +-20 degrees (Keras takes a fraction of a full turn: 20/360), shifts
+-15 %, zoom +-15 %, brightness x0.8..1.2, optional horizontal flip. Values stay
in [0, 255], the range ``to_model_input`` produces.

Optional noise/blur ("texture") augmentation: in the CT training data the
normal slices are much grainier than the malignant ones (mean absolute
Laplacian 32 vs 21), so image noise alone predicts the label. Randomly
blurring and adding noise makes texture useless as a cue, so that the model
has to look at anatomy, as it must on other hospitals' scanners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

ROTATION_DEGREES = 20.0
SHIFT_FRACTION = 0.15
ZOOM_FRACTION = 0.15
BRIGHTNESS_RANGE = (0.8, 1.2)
BLUR_SIGMA = 1.2  # pixels; each image gets a random blend between sharp and this blur
NOISE_STD_MAX = 12.0  # grey levels; each image gets N(0, s), s ~ U(0, NOISE_STD_MAX), half of the time


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply; ``fill_mode`` is how rotated-in corners are filled."""

    horizontal_flip: bool
    fill_mode: str
    seed: int
    texture: bool = False


def build_augmenter(config: AugmentConfig) -> keras.Sequential:
    """Geometric augmentation layers (active only when called with training=True)."""
    layers: list[keras.layers.Layer] = []
    if config.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=config.seed))
    layers += [
        keras.layers.RandomRotation(ROTATION_DEGREES / 360.0, fill_mode=config.fill_mode, seed=config.seed + 1),
        keras.layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION, fill_mode=config.fill_mode, seed=config.seed + 2),
        keras.layers.RandomZoom(ZOOM_FRACTION, ZOOM_FRACTION, fill_mode=config.fill_mode, seed=config.seed + 3),
    ]
    return keras.Sequential(layers, name="augmentation")


def scale_brightness(images: tf.Tensor) -> tf.Tensor:
    """Multiply each image by a factor in BRIGHTNESS_RANGE, clipped to [0, 255]."""
    factors = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], *BRIGHTNESS_RANGE)
    return tf.clip_by_value(images * factors, 0.0, 255.0)


def gaussian_kernel(sigma: float) -> tf.Tensor:
    """Depthwise 2-D Gaussian kernel (2k+1)^2 x 3 channels x 1."""
    radius = max(1, int(round(3 * sigma)))
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    line = tf.exp(-(offsets**2) / (2.0 * sigma * sigma))
    line = line / tf.reduce_sum(line)
    square = line[:, None] * line[None, :]
    return tf.tile(square[:, :, None, None], [1, 1, 3, 1])


def vary_texture(images: tf.Tensor) -> tf.Tensor:
    """Per image: a random blend towards a Gaussian blur, then (half the time) Gaussian noise."""
    batch = tf.shape(images)[0]
    blurred = tf.nn.depthwise_conv2d(images, gaussian_kernel(BLUR_SIGMA), [1, 1, 1, 1], "SAME")
    blend = tf.random.uniform([batch, 1, 1, 1])
    mixed = images + blend * (blurred - images)
    noise_std = tf.random.uniform([batch, 1, 1, 1], 0.0, NOISE_STD_MAX)
    noise_on = tf.cast(tf.random.uniform([batch, 1, 1, 1]) < 0.5, tf.float32)
    grey_noise = tf.random.normal(tf.shape(images)[:3])[..., None]  # same noise in the 3 grey channels
    return tf.clip_by_value(mixed + noise_on * noise_std * grey_noise, 0.0, 255.0)


def make_augment_fn(config: AugmentConfig) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """A batch -> batch function for ``tf.data.Dataset.map``."""
    augmenter = build_augmenter(config)

    def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        augmented = scale_brightness(augmenter(images, training=True))
        return (vary_texture(augmented) if config.texture else augmented), labels

    return augment
