"""Smoke test of the whole training pipeline on a handful of real CT images.

Plan:
1. copy 12 cancer and 12 normal slices from distinct series blocks of
   ../shared/data/ct into a temporary folder (with their labels.csv rows);
2. run ``training.train`` at 96 px, one epoch per stage, into a temporary folder;
3. check every artefact exists and the card describes the tflite (model id,
   output indices and shapes, head weights);
4. independently compare LiteRT with Keras on the images and recompute the
   probability from the features and the card's head (what the plug-in's CAM uses);
5. run ``training.evaluate --json`` with TensorFlow made unimportable and parse
   its last line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.data import default_data_dir, load_data
from training.litert import run_tflite

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 96
PER_CLASS = 12


def make_small_ct_folder(target: Path) -> Path:
    """The first slice of PER_CLASS series blocks per class, with labels.csv."""
    source = default_data_dir("ct")
    rows = list(csv.DictReader((source / "labels.csv").open()))
    chosen, seen = [], set()
    for label in ("cancer", "normal"):
        blocks = [r for r in rows if r["label"] == label and r["series_block"] not in seen]
        for row in blocks:
            if row["series_block"] not in seen and sum(r["label"] == label for r in chosen) < PER_CLASS:
                seen.add(row["series_block"])
                chosen.append(row)
    for row in chosen:
        (target / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["file"], target / row["file"])
    with (target / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return target


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data_dir = make_small_ct_folder(tmp_path_factory.mktemp("data"))
    out_dir = tmp_path_factory.mktemp("model")
    command = [sys.executable, "-m", "training.train", "--modality", "ct", "--data", str(data_dir),
               "--out", str(out_dir), "--input-size", str(SIZE), "--epochs-stage1", "1",
               "--epochs-stage2", "1", "--batch-size", "8"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stage 1" in result.stdout and "stage 2" in result.stdout
    return data_dir, out_dir


@pytest.mark.training
def test_every_artefact_is_written(trained: tuple[Path, Path]) -> None:
    _, out_dir = trained
    for name in ("model.tflite", "model.keras", "card.json", "plots/training_curves.png", "plots/roc.png",
                 "plots/confusion_matrix.png"):
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name


@pytest.mark.training
def test_card_describes_the_tflite(trained: tuple[Path, Path]) -> None:
    _, out_dir = trained
    card = json.loads((out_dir / "card.json").read_text())
    assert card["model_id"] == hashlib.sha256((out_dir / "model.tflite").read_bytes()).hexdigest()
    assert card["name"] == "lungledger-mobilenetv2-ct" and card["modality"] == "ct"
    assert card["input_size"] == SIZE and 0.0 < card["threshold"] < 1.0
    assert sorted(card["outputs"].values()) == [0, 1]
    assert len(card["head"]["weights"]) == card["output_shapes"]["features"][-1] == 1280
    groups = card["split"]["groups"]
    assert not set(groups["train"]) & set(groups["validation"])
    assert not set(groups["tuning"]) & set(groups["validation"])
    for key in ("n", "accuracy", "sensitivity", "specificity", "auc"):
        assert key in card["metrics"]["validation"]
    assert card["export_check"]["max_abs_difference"]["probability"] <= 1e-4


@pytest.mark.training
def test_litert_matches_keras_and_card_head(trained: tuple[Path, Path]) -> None:
    import keras

    data_dir, out_dir = trained
    card = json.loads((out_dir / "card.json").read_text())
    images = load_data(data_dir, "ct", SIZE).images
    lite = run_tflite(out_dir / "model.tflite", images)
    expected = keras.saving.load_model(out_dir / "model.keras").predict(images, verbose=0)
    assert np.max(np.abs(expected["probability"][:, 0] - lite.probability)) <= 1e-4
    assert np.max(np.abs(expected["features"] - lite.features)) <= 6e-4  # 1e-4 of the ReLU6 range
    assert lite.features.shape[1:] == tuple(card["output_shapes"]["features"][1:])
    logits = lite.features.mean(axis=(1, 2)) @ np.array(card["head"]["weights"]) + card["head"]["bias"]
    assert np.max(np.abs(1 / (1 + np.exp(-logits)) - lite.probability)) <= 1e-4


@pytest.mark.training
def test_evaluate_runs_without_tensorflow(trained: tuple[Path, Path]) -> None:
    data_dir, out_dir = trained
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None;"
        "from training.evaluate import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", code, "--modality", "ct", "--data", str(data_dir),
               "--model", str(out_dir / "model.tflite"), "--json"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] == 2 * PER_CLASS
    for key in ("accuracy", "sensitivity", "specificity", "auc", "auc_ci_low", "auc_ci_high"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["auc_ci_low"] <= summary["auc"] <= summary["auc_ci_high"]
