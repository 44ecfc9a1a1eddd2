"""Run an exported ``model.tflite`` with LiteRT (no TensorFlow).

Used by ``training.evaluate`` and by the export check in ``training.export``.
The two outputs are told apart by shape, not by name (tflite does not always
keep output names): ``probability`` is [batch, 1], ``features`` is 4-D.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

BATCH_SIZE = 16


@dataclass(frozen=True)
class LiteRTOutputs:
    """Probabilities (n,) and last-conv features (n, h, w, C)."""

    probability: np.ndarray
    features: np.ndarray


def get_output_indices(model_path: Path) -> dict[str, int]:
    """Output index (position in get_output_details) of ``probability`` and ``features``."""
    interpreter = Interpreter(model_path=str(model_path))
    details = interpreter.get_output_details()
    indices: dict[str, int] = {}
    for position, detail in enumerate(details):
        rank = len(detail["shape"])
        if rank == 2 and int(detail["shape"][-1]) == 1:
            indices["probability"] = position
        elif rank == 4:
            indices["features"] = position
    if set(indices) != {"probability", "features"} or len(details) != 2:
        shapes = [list(detail["shape"]) for detail in details]
        raise ValueError(f"{model_path}: expected outputs [batch,1] and [batch,h,w,C], found shapes {shapes}")
    return indices


def to_input_layout(images: np.ndarray, channels: int, dtype: np.dtype) -> np.ndarray:
    """Model inputs (n, S, S, 3) or (n, S, S, 1) in [0, 255] -> the layout a model takes.

    A grey model (2.0.1 on) gets the first channel (the preprocessing copies one
    grey square to three channels); an RGB model gets the grey copied to three.
    """
    images = np.asarray(images)
    if channels == 1:
        return np.ascontiguousarray(images[..., :1], dtype=dtype)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return np.ascontiguousarray(images, dtype=dtype)


def run_tflite(model_path: Path, images: np.ndarray, batch_size: int = BATCH_SIZE) -> LiteRTOutputs:
    """Run the model on images (n, S, S, 3) or (n, S, S, 1) in [0, 255], in batches (see to_input_layout)."""
    indices = get_output_indices(model_path)
    interpreter = Interpreter(model_path=str(model_path))
    input_detail = interpreter.get_input_details()[0]
    dynamic = int(input_detail["shape_signature"][0]) == -1
    step = batch_size if dynamic else 1
    probabilities, features = [], []
    current_batch = -1
    for start in range(0, len(images), step):
        batch = to_input_layout(images[start : start + step], int(input_detail["shape"][3]),
                                np.dtype(input_detail["dtype"]))
        if batch.shape[0] != current_batch:
            interpreter.resize_tensor_input(input_detail["index"], list(batch.shape))
            interpreter.allocate_tensors()
            current_batch = batch.shape[0]
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        outputs = interpreter.get_output_details()
        probabilities.append(interpreter.get_tensor(outputs[indices["probability"]]["index"])[:, 0].copy())
        features.append(interpreter.get_tensor(outputs[indices["features"]]["index"]).copy())
    return LiteRTOutputs(probability=np.concatenate(probabilities), features=np.concatenate(features))
