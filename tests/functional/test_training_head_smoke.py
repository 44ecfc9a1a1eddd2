"""Smoke test of the shipped recipe (``training.train_head``) and of its one-grey-channel input.

Plan:
1. the colour fold: a MobileNetV2 given one grey channel with its first convolution summed over the three
   colour channels (``fold_colour_channels``) computes what the RGB network computes on that grey image copied
   to three channels; weights that cannot be folded are refused;
2. ``training.train_head`` on 16 real CT slices per class at 96 px, one look copy: every artefact is written,
   the card says the input is one grey channel, the node's ``LiteRTModel`` loads the model (its own head check
   passes) and, on real slices prepared exactly as the node prepares them, the card's head on the pooled
   features gives the model's probability.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnostics.imaging import decode_image
from diagnostics.model import LiteRTModel
from training.data import default_data_dir, list_records

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 96


@pytest.mark.training
def test_a_grey_channel_with_the_folded_first_convolution_equals_the_grey_copied_to_three() -> None:
    import keras

    from training.train_head import fold_colour_channels

    keras.utils.set_random_seed(5)
    rgb = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False, weights=None)
    grey = keras.applications.MobileNetV2(input_shape=(64, 64, 1), alpha=0.35, include_top=False, weights=None)
    grey.set_weights(fold_colour_channels(rgb.get_weights(), grey.get_weights()))
    images = np.random.default_rng(1).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float32)
    expected = rgb.predict(np.repeat(images, 3, axis=3), verbose=0)
    actual = grey.predict(images, verbose=0)
    assert np.max(np.abs(expected - actual)) <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    # a different network's weights are refused, not silently reshaped
    other = keras.applications.MobileNetV2(input_shape=(64, 64, 1), alpha=0.5, include_top=False, weights=None)
    with pytest.raises(ValueError, match="cannot fold"):
        fold_colour_channels(rgb.get_weights(), other.get_weights())


@pytest.fixture(scope="module")
def head_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("head_model")
    command = [sys.executable, "-m", "training.train_head", "--modality", "ct", "--limit", "16",
               "--size", str(SIZE), "--copies", "1", "--out", str(out_dir), "--version", "0.0.1-smoke"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir


@pytest.mark.training
def test_the_recipe_writes_a_model_the_node_serves(head_model: Path) -> None:
    for name in ("model.tflite", "model.keras", "card.json", "gate.json", "plots/reliability.png"):
        assert (head_model / name).is_file() and (head_model / name).stat().st_size > 0, name
    card = json.loads((head_model / "card.json").read_text())
    assert card["model_id"] == hashlib.sha256((head_model / "model.tflite").read_bytes()).hexdigest()
    assert card["input"]["shape"] == [-1, SIZE, SIZE, 1] and card["input"]["dtype"] == "float32"
    assert card["preprocessing"] == "diagnostics.preprocessing.to_model_square"
    model = LiteRTModel(head_model, max_batch=2)  # refuses a card whose head does not give the model's output
    assert model.input_channels == 1 and model.gate is not None
    data_dir = default_data_dir("ct")
    records = list_records(data_dir)
    chosen = [r for r in records if r.label == 1][:2] + [r for r in records if r.label == 0][:2]
    tensors = np.stack([model.prepare_input(decode_image((data_dir / r.file).read_bytes(), "ct").pixels)
                        for r in chosen])
    assert tensors.shape == (4, SIZE, SIZE, 1) and tensors.dtype == np.float32
    probabilities, features = model.predict(tensors)
    logits = features.mean(axis=(1, 2)) @ model.card.head_weights + model.card.head_bias
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0))), probabilities, atol=1e-4)
