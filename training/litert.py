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


def run_tflite(model_path: Path, images: np.ndarray, batch_size: int = BATCH_SIZE) -> LiteRTOutputs:
    """Run the model on float32 images (n, S, S, 3) in [0, 255], in batches."""
    indices = get_output_indices(model_path)
    interpreter = Interpreter(model_path=str(model_path))
    input_detail = interpreter.get_input_details()[0]
    dynamic = int(input_detail["shape_signature"][0]) == -1
    step = batch_size if dynamic else 1
    probabilities, features = [], []
    current_batch = -1
    for start in range(0, len(images), step):
        batch = np.ascontiguousarray(images[start : start + step], dtype=np.float32)
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
