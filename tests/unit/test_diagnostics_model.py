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
    for name in ("model.tflite", "card.json", "gate.json"):
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
    batch = np.random.default_rng(0).uniform(0, 255, (6, size, size, model.input_channels)).astype(np.float32)
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


def test_chunk_sizes_are_powers_of_two_within_the_limit() -> None:
    from diagnostics.model import get_chunk_sizes

    assert get_chunk_sizes(7, 8) == [4, 2, 1]
    assert get_chunk_sizes(8, 8) == [8]
    assert get_chunk_sizes(11, 8) == [8, 2, 1]
    assert get_chunk_sizes(5, 1) == [1] * 5
    assert get_chunk_sizes(6, 6) == [4, 2]


def test_batch_interpreters_are_allocated_up_front_and_released(model_copy: Path) -> None:
    model = LiteRTModel(model_copy)
    model.set_max_batch(5)
    assert sorted(model._interpreters) == [1, 2, 4]
    model.set_max_batch(1)
    assert sorted(model._interpreters) == [1]


def test_auto_batching_follows_the_measurement(model_copy: Path) -> None:
    from diagnostics.model import BATCHING_GAIN, choose_max_batch

    model = LiteRTModel(model_copy, max_batch=2)
    chosen, measured = choose_max_batch(model)
    faster = measured["batched_s_per_image"] < BATCHING_GAIN * measured["single_s_per_image"]
    assert chosen == (8 if faster else 1)
    assert model.max_batch == 2 and sorted(model._interpreters) == [1, 2]  # measuring leaves it as it was


@pytest.mark.parametrize("max_batch", [0, -2, "8", 2.5, True])
def test_bad_max_batch_option_is_refused(model_copy: Path, max_batch: object) -> None:
    from diagnostics import load_plugin

    with pytest.raises(DiagnosisError) as caught:
        load_plugin("mobilenetv2", {"models_dir": str(model_copy.parent), "max_batch": max_batch})
    assert caught.value.code == "bad-config"
