"""MobileNetV2 (alpha 0.35, ImageNet) transfer-learning model with a sigmoid head.

Follows the keras-io transfer-learning guide: the base is called with
``training=False`` so its BatchNorm layers stay in inference mode in both
stages; stage 2 unfreezes only the last layers (BatchNorm excluded) and the
model must be recompiled after every change of ``trainable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from training.weights import WeightsError, default_weights_path, validate_weights

__all__ = ["WeightsError", "apply_fine_tuning", "build_model", "compile_classifier", "default_weights_path"]

ALPHA = 0.35
FEATURES_LAYER = "out_relu"


@dataclass(frozen=True)
class BuiltModel:
    """The training model (one output), the export model (two outputs) and the base."""

    classifier: keras.Model
    exported: keras.Model
    base: keras.Model
    head: keras.layers.Dense


def build_model(input_size: int, weights_path: Path, dropout: float) -> BuiltModel:
    """Rescaling -> frozen MobileNetV2 -> GAP -> dropout -> Dense(1, sigmoid)."""
    validate_weights(weights_path)
    base = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3), alpha=ALPHA, include_top=False, weights=str(weights_path)
    )
    base.trainable = False
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_to_unit")(inputs)
    features = base(scaled, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    head = keras.layers.Dense(1, activation="sigmoid", name="probability")
    probability = head(dropped)
    classifier = keras.Model(inputs, probability, name="lungledger_classifier")
    exported = keras.Model(inputs, {"probability": probability, "features": features}, name="lungledger_export")
    return BuiltModel(classifier=classifier, exported=exported, base=base, head=head)


def apply_fine_tuning(base: keras.Model, unfrozen_layers: int) -> int:
    """Unfreeze the last ``unfrozen_layers`` layers of the base, BatchNorm excluded; returns trainable count."""
    base.trainable = True
    cutoff = len(base.layers) - unfrozen_layers
    for position, layer in enumerate(base.layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = position >= cutoff and not is_batch_norm
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)


def compile_classifier(model: keras.Model, learning_rate: float) -> None:
    """Adam + binary cross-entropy, with accuracy and AUC reported per epoch."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
