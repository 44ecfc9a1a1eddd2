"""LiteRT export of the two-output model, and the check that it matches Keras.

The tflite model takes float32 [batch, S, S, 3] in [0, 255] (dynamic batch) and
returns ``probability`` [batch, 1] and ``features`` [batch, h, w, C] (the
``out_relu`` activations of MobileNetV2 that feed global average pooling).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.litert import get_output_indices, run_tflite

MATCH_TOLERANCE = 1e-4


class ExportMismatchError(RuntimeError):
    """The tflite model does not reproduce the Keras model's outputs."""


def export_tflite(model: keras.Model, path: Path) -> dict[str, int]:
    """Write ``model`` (two outputs) as float32 tflite with a dynamic batch; return output indices.

    Goes through a SavedModel: converting a Keras 3 model's concrete function
    directly leaves READ_VARIABLE ops without their variables (NaN outputs).
    """
    with tempfile.TemporaryDirectory() as workdir:
        saved_model = Path(workdir) / "saved_model"
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        Path(path).write_bytes(converter.convert())
    return get_output_indices(Path(path))


def check_tflite_matches(model: keras.Model, path: Path, images: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output; raise ExportMismatchError when out of tolerance.

    ``probability`` must agree within MATCH_TOLERANCE absolutely. ``features``
    (ReLU6 activations up to 6 after ~150 layers) differ by a few 1e-4 between
    TensorFlow's oneDNN kernels and LiteRT's, whichever LiteRT delegate runs, so
    they are held to MATCH_TOLERANCE relative to their largest magnitude.
    """
    expected = model.predict(images, batch_size=32, verbose=0)
    actual = run_tflite(Path(path), images)
    feature_scale = max(1.0, float(np.max(np.abs(expected["features"]))))
    differences = {
        "probability": float(np.max(np.abs(expected["probability"][:, 0] - actual.probability))),
        "features": float(np.max(np.abs(expected["features"] - actual.features))),
        "features_relative": float(np.max(np.abs(expected["features"] - actual.features))) / feature_scale,
    }
    failed = {
        name: differences[name]
        for name in ("probability", "features_relative")
        if not differences[name] <= MATCH_TOLERANCE  # NaN fails too
    }
    if failed:
        raise ExportMismatchError(
            f"{path} differs from the Keras model by {failed} (tolerance {MATCH_TOLERANCE}) on {len(images)} images; "
            "the export is not trustworthy and was not accepted"
        )
    return differences
