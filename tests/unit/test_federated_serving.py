"""Serving an adopted head (issue 15): the served model id, the head store and the plug-in's use of a head."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from diagnostics.errors import DiagnosisError
from diagnostics.federated import FederatedError, Head, ServedHead, compute_served_model_id, compute_sigmoid
from diagnostics.mobilenetv2 import get_builtin_head
from diagnostics.plugin import HeadServingPlugin, load_plugin
from diagnostics.risk import RiskFactors
from node.federated_heads import HeadStore, HeadStoreError, StoredHead, load_servable

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
BASE_ID = "ab" * 32


def make_head(seed: int, features: int = 8) -> Head:
    rng = np.random.default_rng(seed)
    return Head.create(rng.normal(0.0, 0.1, features), float(rng.normal()))


def test_served_model_id_is_sha256_of_the_model_id_then_the_head_digest() -> None:
    head = make_head(1)
    expected = hashlib.sha256(bytes.fromhex(BASE_ID) + bytes.fromhex(head.digest())).hexdigest()
    assert compute_served_model_id(BASE_ID, head.digest()) == expected
    assert ServedHead(BASE_ID, head).model_id == expected
    assert compute_served_model_id(BASE_ID, make_head(2).digest()) != expected  # another head, another id
    assert compute_served_model_id("cd" * 32, head.digest()) != expected  # another model, another id
    with pytest.raises(FederatedError) as refused:
        compute_served_model_id("ab" * 16, head.digest())
    assert refused.value.code == "bad-digest"


def test_served_probability_is_the_sigmoid_of_the_head_on_the_pooled_features() -> None:
    head = make_head(3, features=4)
    feature_map = np.random.default_rng(4).uniform(0.0, 6.0, (7, 7, 4)).astype(np.float32)
    pooled = feature_map.astype(np.float64).mean(axis=(0, 1))
    expected = float(compute_sigmoid(np.array(pooled @ head.weights + head.bias)))
    assert ServedHead(BASE_ID, head).compute_probability(feature_map) == pytest.approx(expected, abs=1e-15)


def test_head_store_round_trips_heads_by_digest_with_private_files(tmp_path: Path) -> None:
    store = HeadStore(tmp_path / "heads")
    assert store.load_current("xray") is None and store.list_heads() == []
    first = StoredHead("xray", BASE_ID, make_head(5), "01" * 32, 1000)
    second = StoredHead("xray", BASE_ID, make_head(6), "02" * 32, 2000)
    store.save(first)
    store.save(second)
    loaded = store.load(first.digest)
    assert loaded is not None and loaded.digest == first.digest and loaded.round_id == first.round_id
    assert np.array_equal(loaded.head.weights, first.head.weights) and loaded.head.bias == first.head.bias
    current = store.load_current("xray")
    assert current is not None and current.digest == second.digest  # the last adopted one
    assert [item["digest"] for item in store.list_heads()] == [first.digest, second.digest]
    assert store.list_heads()[1]["served_model_id"] == compute_served_model_id(BASE_ID, second.digest)
    assert store.load("ff" * 32) is None and store.load("../etc/passwd") is None
    for path in (tmp_path / "heads").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(tmp_path / "heads").st_mode) == 0o700
    # an auditor's copy: the JSON weights reproduce the digest exactly
    described = first.to_json()
    assert Head.create(described["weights"], described["bias"]).digest() == first.digest


def test_a_damaged_or_swapped_head_file_is_refused(tmp_path: Path) -> None:
    store = HeadStore(tmp_path)
    first, second = StoredHead("xray", BASE_ID, make_head(7), None, 1), StoredHead("xray", BASE_ID, make_head(8), None, 2)
    store.save(first)
    store.save(second)
    npy = tmp_path / f"{first.digest}.npy"
    npy.write_bytes(npy.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(HeadStoreError) as damaged:
        store.load(first.digest)
    assert damaged.value.code == "damaged-head"
    # a swapped pair (second's files under first's name) fails the digest check
    for suffix in (".npy", ".json"):
        (tmp_path / f"{first.digest}{suffix}").write_bytes((tmp_path / f"{second.digest}{suffix}").read_bytes())
    with pytest.raises(HeadStoreError) as swapped:
        store.load(first.digest)
    assert swapped.value.code == "damaged-head"
    assert [item["digest"] for item in store.list_heads()] == [second.digest]
    meta = json.loads((tmp_path / f"{second.digest}.json").read_text())
    assert "weights" not in meta  # weights live in the .npy only


def test_only_a_head_of_this_model_is_restored(tmp_path: Path) -> None:
    store = HeadStore(tmp_path)
    assert load_servable(store, "xray", BASE_ID) is None
    stored = StoredHead("xray", BASE_ID, make_head(9), None, 1)
    store.save(stored)
    restored = load_servable(store, "xray", BASE_ID)
    assert restored is not None and restored.digest == stored.digest
    assert load_servable(store, "xray", "cd" * 32) is None  # a new .tflite: its built-in head, not an old head
    assert load_servable(store, "ct", BASE_ID) is None
    (tmp_path / "current.json").write_text("[1, 2]")
    assert load_servable(store, "xray", BASE_ID) is None  # damaged: logged, the built-in head is served


@pytest.fixture(scope="module")
def xray_plugin() -> object:
    if not (MODELS_DIR / "xray" / "model.tflite").exists():
        pytest.skip("no exported X-ray model")
    plugin = load_plugin("mobilenetv2", {"models_dir": str(MODELS_DIR), "modalities": ["xray"], "max_batch": 1})
    yield plugin
    assert plugin is not None
    plugin.close()


def test_the_plugin_serves_an_adopted_head_from_the_same_features(xray_plugin: object,
                                                                   shared_data_dir: Path) -> None:
    plugin = xray_plugin
    assert isinstance(plugin, HeadServingPlugin)
    model = plugin.models["xray"]  # type: ignore[attr-defined]
    image = next((shared_data_dir / "xray" / "cancer").glob("*.png")).read_bytes()
    before_result = plugin.diagnose({"xray": image}, RiskFactors())  # type: ignore[attr-defined]
    before = before_result.modalities["xray"]
    assert before.model.sha256 == model.card.model_id and "head_digest" not in before.model.to_dict()
    # the built-in head applied to the features reproduces the model's own probability (the convention)
    builtin = ServedHead(model.card.model_id, get_builtin_head(model))
    prepared = plugin.prepare("xray", image)  # type: ignore[attr-defined]
    _, features = model.predict(prepared.tensor[None])
    assert builtin.compute_probability(features[0]) == pytest.approx(before.probability, abs=1e-3)
    plugin.serve_head("xray", builtin)  # serving the built-in head changes nothing
    assert plugin.diagnose({"xray": image}, RiskFactors()).to_dict() == before_result.to_dict()  # type: ignore[attr-defined]
    assert plugin.get_served_head("xray") is None  # type: ignore[attr-defined]

    adopted = ServedHead(model.card.model_id, Head.create(builtin.head.weights * 1.5, builtin.head.bias + 0.3))
    plugin.serve_head("xray", adopted)
    try:
        after = plugin.diagnose({"xray": image}, RiskFactors()).modalities["xray"]  # type: ignore[attr-defined]
        assert after.probability == adopted.compute_probability(features[0])
        assert after.probability != pytest.approx(before.probability, abs=1e-3)
        assert after.model.sha256 == adopted.model_id
        assert after.model.to_dict()["head_digest"] == adopted.digest
        assert after.model.to_dict()["base_sha256"] == model.card.model_id
        assert after.threshold == before.threshold  # the card's threshold is kept
        with pytest.raises(DiagnosisError) as mismatch:
            plugin.serve_head("xray", ServedHead("cd" * 32, adopted.head))
        assert mismatch.value.code == "model-mismatch"
    finally:
        plugin.serve_head("xray", None)
    again = plugin.diagnose({"xray": image}, RiskFactors()).modalities["xray"]  # type: ignore[attr-defined]
    assert again.probability == before.probability and again.model == before.model


def test_a_record_made_with_an_adopted_head_can_be_amended_while_that_head_is_served() -> None:
    from node.hospital.amend import AmendError, build_amended_result

    served_id = compute_served_model_id(BASE_ID, make_head(10).digest())
    details = {"commitment": {"patient_pseudonym": None},
               "result": {"modalities": {"xray": {"probability": 0.7, "threshold": 0.5,
                                                  "model": {"name": "m", "version": "1", "sha256": served_id}}},
                          "risk_factors": {}}}
    card = {"sha256": BASE_ID, "validation": {"auc": 0.8}}
    amended = build_amended_result("00" * 16, details, {"age": 60},
                                   {"models": {"xray": {**card, "served_model_id": served_id}}}, {})
    assert amended["risk_factors"]["age"] == 60 and amended["amends"]["record_id"] == "00" * 16
    with pytest.raises(AmendError) as refused:  # the built-in head is served again: another model
        build_amended_result("00" * 16, details, {"age": 60}, {"models": {"xray": card}}, {})
    assert refused.value.code == "model-changed"
