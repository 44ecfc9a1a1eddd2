"""Training-time augmentation, applied in the tf.data pipeline (not in the exported model).

Rotation +-20 degrees (Keras takes a fraction of a full turn: 20/360), shifts
+-15 %, zoom +-15 %, brightness x0.8..1.2, optional horizontal flip. Values stay
in [0, 255], the range ``to_model_input`` produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

ROTATION_DEGREES = 20.0
SHIFT_FRACTION = 0.15
ZOOM_FRACTION = 0.15
BRIGHTNESS_RANGE = (0.8, 1.2)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply; ``fill_mode`` is how rotated-in corners are filled."""

    horizontal_flip: bool
    fill_mode: str
    seed: int


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


def make_augment_fn(config: AugmentConfig):  # type: ignore[no-untyped-def]
    """A batch -> batch function for ``tf.data.Dataset.map``."""
    augmenter = build_augmenter(config)

    def augment(images: tf.Tensor, labels: tf.Tensor):  # type: ignore[no-untyped-def]
        return scale_brightness(augmenter(images, training=True)), labels

    return augment
