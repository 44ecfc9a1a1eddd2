"""Loading exported models: the card must belong to the model, or the node refuses to serve it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from diagnostics.errors import DiagnosisError
from diagnostics.model import LiteRTModel, load_model_card
from tests.unit.test_diagnostics_helpers import require_models


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    source = require_models("ct") / "ct"
    target = tmp_path / "ct"
    target.mkdir()
    for name in ("model.tflite", "card.json"):
        shutil.copy(source / name, target / name)
    return target


def edit_card(model_dir: Path, **changes: object) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    card.update(changes)
    (model_dir / "card.json").write_text(json.dumps(card))


def load_code(model_dir: Path) -> str:
    with pytest.raises(DiagnosisError) as caught:
        LiteRTModel(model_dir)
    return caught.value.code


def test_exported_model_loads_and_matches_its_card(model_copy: Path) -> None:
    model = LiteRTModel(model_copy, max_batch=4)
    card = model.card
    assert card.modality == "ct" and 0 < card.threshold < 1 and card.input_size >= 32
    size = card.input_size
    batch = np.random.default_rng(0).uniform(0, 255, (6, size, size, 3)).astype(np.float32)
    probabilities, features = model.predict(batch)
    assert probabilities.shape == (6,) and features.shape[0] == 6
    assert features.shape[3] == card.head_weights.size
    # batched (4 + 2) and one-by-one inference agree
    singles = np.array([model.predict(batch[i:i + 1])[0][0] for i in range(6)])
    np.testing.assert_allclose(probabilities, singles, atol=1e-5)


def test_model_with_another_sha256_is_refused(model_copy: Path) -> None:
    edit_card(model_copy, model_id="0" * 64)
    assert load_code(model_copy) == "model-mismatch"


def test_card_whose_head_does_not_reproduce_the_model_is_refused(model_copy: Path) -> None:
    card = json.loads((model_copy / "card.json").read_text())
    card["head"]["bias"] += 1.0
    (model_copy / "card.json").write_text(json.dumps(card))
    assert load_code(model_copy) == "bad-model-card"


@pytest.mark.parametrize("changes", [{"threshold": 1.5}, {"input_size": 123}, {"outputs": {"probability": 0}},
                                     {"head": {"weights": [1.0, 2.0], "bias": 0.0}}, {"metrics": {}}])
def test_malformed_cards_are_refused(model_copy: Path, changes: dict[str, object]) -> None:
    edit_card(model_copy, **changes)
    assert load_code(model_copy) == "bad-model-card"


def test_missing_files_are_reported(model_copy: Path) -> None:
    (model_copy / "model.tflite").unlink()
    assert load_code(model_copy) == "model-unavailable"
    (model_copy / "card.json").unlink()
    with pytest.raises(DiagnosisError) as caught:
        load_model_card(model_copy / "card.json")
    assert caught.value.code == "model-unavailable"
