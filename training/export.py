"""LiteRT export of the two-output model, and the check that it matches Keras.

The tflite model takes float32 [batch, S, S, 3] in [0, 255] (dynamic batch) and
returns ``probability`` [batch, 1] and ``features`` [batch, h, w, C] (the
``out_relu`` activations of MobileNetV2 that feed global average pooling).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.litert import get_output_indices, run_tflite

MATCH_TOLERANCE = 1e-4


class ExportMismatchError(RuntimeError):
    """The tflite model does not reproduce the Keras model's outputs."""


def export_tflite(model: keras.Model, path: Path) -> dict[str, int]:
    """Write ``model`` (two outputs) as float32 tflite with a dynamic batch; return output indices."""
    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = model(image, training=False)
        return {"probability": outputs["probability"], "features": outputs["features"]}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    Path(path).write_bytes(converter.convert())
    return get_output_indices(Path(path))


def check_tflite_matches(model: keras.Model, path: Path, images: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output; raise ExportMismatchError above MATCH_TOLERANCE."""
    expected = model.predict(images, batch_size=32, verbose=0)
    actual = run_tflite(Path(path), images)
    differences = {
        "probability": float(np.max(np.abs(expected["probability"][:, 0] - actual.probability))),
        "features": float(np.max(np.abs(expected["features"] - actual.features))),
    }
    failed = {name: value for name, value in differences.items() if not value <= MATCH_TOLERANCE}
    if failed:
        raise ExportMismatchError(
            f"{path} differs from the Keras model by {failed} (tolerance {MATCH_TOLERANCE}) on {len(images)} images; "
            "the export is not trustworthy and was not accepted"
        )
    return differences
