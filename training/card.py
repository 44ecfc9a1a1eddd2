"""Model card (``card.json``): what the inference plug-in and reviewers read.

No TensorFlow here; ``training.evaluate`` reads cards too.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
MODEL_FILE = "model.tflite"
KERAS_FILE = "model.keras"
PREPROCESSING = "diagnostics.preprocessing.to_model_square"
PREPROCESSING_FLOAT_RGB = "diagnostics.preprocessing.to_model_input"  # the 1.x recipe (training.fit)


def describe_input(size: int) -> dict[str, Any]:
    """The card's ``input`` entry of a model that takes the harmonised grey square as one channel (2.0.1 on)."""
    return {"dtype": "float32", "shape": [-1, size, size, 1], "range": [0, 255],
            "rescaling": "inside the model: x / 127.5 - 1",
            "channels": "one grey channel: the ImageNet backbone's first convolution is summed over its three "
                        "colour channels, which computes exactly what it computes on a grey image copied to three"}


def get_model_name(modality: str) -> str:
    """The model's name, e.g. ``lungledger-mobilenetv2-ct``."""
    return f"lungledger-mobilenetv2-{modality}"


def compute_model_id(tflite_path: Path) -> str:
    """SHA-256 hex of the tflite file."""
    return hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest()


def write_card(path: Path, card: dict[str, Any]) -> None:
    """Write the card as indented JSON (NaN becomes null so that strict parsers accept it)."""
    Path(path).write_text(json.dumps(replace_nan(card), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_card(path: Path) -> dict[str, Any]:
    """Read a card and check the fields evaluation relies on."""
    card = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [key for key in ("model_id", "modality", "input_size", "threshold", "outputs") if key not in card]
    if missing:
        raise ValueError(f"{path} is not a LungLedger model card (missing {', '.join(missing)})")
    checked: dict[str, Any] = card
    return checked


def replace_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: replace_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_nan(item) for item in value]
    return value
