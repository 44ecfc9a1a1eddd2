"""The learned input gate (issue 10, section 3) on the real folders, through the shipped models.

Each image goes through the node's own decode + preprocessing + LiteRT model,
and the gate of the model of the *declared* modality decides on its pooled
features. Four points:

1. every slice of ``ct_check_lpctdx`` and every file of ``dicom/`` is accepted as CT;
2. at least 95 % of radiographs declared as CT, and of CT slices declared as
   radiographs, are refused (``wrong-modality``);
3. photographs and documents shipped by Python packages (greyscale) are refused;
4. every training-folder image is accepted as its own modality.

(``ct_check_lpctdx`` is only *measured* here; nothing was fitted or tuned on it.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from diagnostics.errors import DiagnosisError
from diagnostics.imaging import decode_image
from diagnostics.model import LiteRTModel
from diagnostics.plausibility import validate_chest_image
from tests.unit.test_diagnostics_helpers import require_models

MODALITIES = ("ct", "xray")


@pytest.fixture(scope="module")
def models() -> dict[str, LiteRTModel]:
    models_dir = require_models(*MODALITIES)
    loaded = {m: LiteRTModel(models_dir / m, num_threads=2) for m in MODALITIES}
    for model in loaded.values():
        if model.gate is None:
            pytest.fail(f"{model.card.name} {model.card.version} ships no input gate (gate.json)")
    return loaded


def decide(model: LiteRTModel, pixels: np.ndarray) -> str:
    """'accepted', 'flagged' or the refusal code, for one decoded image declared as the model's modality."""
    try:
        validate_chest_image(pixels)
        _, features = model.predict(model.prepare_input(pixels)[None])
        decision = model.gate.check(features[0].mean(axis=(0, 1)))  # type: ignore[union-attr]
    except DiagnosisError as error:
        return error.code
    return "flagged" if decision.out_of_distribution else "accepted"


def decide_folder(model: LiteRTModel, paths: list[Path], decoded_as: str) -> dict[str, str]:
    return {path.name: decide(model, decode_image(path.read_bytes(), decoded_as).pixels) for path in paths}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".dcm"))


def test_every_ct_check_slice_and_every_dicom_file_is_accepted_as_ct(
        models: dict[str, LiteRTModel], shared_data_dir: Path) -> None:
    slices = image_files(shared_data_dir / "ct_check_lpctdx")
    dicoms = image_files(shared_data_dir / "dicom")
    assert len(slices) == len(list((shared_data_dir / "ct_check_lpctdx").glob("*/*.png"))) > 0 and dicoms
    decisions = decide_folder(models["ct"], slices + dicoms, "ct")
    refused = {name: code for name, code in decisions.items() if code not in ("accepted", "flagged")}
    assert refused == {}


@pytest.mark.parametrize("declared", MODALITIES)
def test_at_least_95_percent_of_the_other_modality_is_refused_as_wrong_modality(
        models: dict[str, LiteRTModel], shared_data_dir: Path, declared: str) -> None:
    actual = "xray" if declared == "ct" else "ct"
    paths = image_files(shared_data_dir / actual)
    if actual == "ct":
        paths += image_files(shared_data_dir / "ct_check_lpctdx")
    decisions = Counter(decide_folder(models[declared], paths, actual).values())
    refused = sum(count for code, count in decisions.items() if code not in ("accepted", "flagged"))
    assert refused >= 0.95 * len(paths), decisions
    assert decisions["not-a-chest-image"] <= 0.05 * len(paths), decisions  # refused for the right reason


@pytest.mark.parametrize("declared", MODALITIES)
def test_photographs_and_documents_from_python_packages_are_refused(
        models: dict[str, LiteRTModel], declared: str) -> None:
    pytest.importorskip("skimage", reason="scikit-image ships the photographs (test extra)")
    from training.negatives import load_package_images

    images = load_package_images()
    assert len(images) >= 20
    decisions = {name: decide(models[declared], gray) for name, gray in images.items()}
    accepted = {name: code for name, code in decisions.items() if code in ("accepted", "flagged")}
    assert accepted == {}


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_training_folder_image_is_accepted_as_its_own_modality(
        models: dict[str, LiteRTModel], shared_data_dir: Path, modality: str) -> None:
    paths = image_files(shared_data_dir / modality)
    assert len(paths) > 150
    decisions = decide_folder(models[modality], paths, modality)
    refused = {name: code for name, code in decisions.items() if code not in ("accepted", "flagged")}
    assert refused == {}


def test_an_accepted_but_unfamiliar_slice_is_flagged_in_the_result(shared_data_dir: Path) -> None:
    """A ct_check slice through the whole plug-in: a result, flagged, with the warning shown first."""
    from diagnostics import RiskFactors, load_plugin

    models_dir = require_models("ct")
    plugin = load_plugin("mobilenetv2", {"models_dir": str(models_dir), "modalities": ["ct"], "max_batch": 1})
    try:
        flagged = []
        for path in image_files(shared_data_dir / "ct_check_lpctdx")[:6]:
            result = plugin.diagnose({"ct": path.read_bytes()}, RiskFactors())
            entry = result.to_dict()["modalities"]["ct"]
            assert entry["out_of_distribution"] == ("out-of-distribution" in entry["flags"])
            if entry["out_of_distribution"]:
                flagged.append(path.name)
                assert "out-of-distribution: scores not validated for images like this" in result.recommendations[0]
        if not flagged:
            pytest.skip("no ct_check slice is flagged by this model's gate (nothing to check)")
    finally:
        plugin.close()


def test_a_gate_file_that_does_not_match_the_card_is_refused(tmp_path: Path) -> None:
    import shutil

    models_dir = require_models("ct")
    shutil.copytree(models_dir / "ct", tmp_path / "ct")
    gate = tmp_path / "ct" / "gate.json"
    gate.write_bytes(gate.read_bytes().replace(b'"flag_distance":', b'"flag_distance": ', 1))
    with pytest.raises(DiagnosisError) as caught:
        LiteRTModel(tmp_path / "ct")
    assert caught.value.code == "model-mismatch"
