"""Folder reader on real images; evaluation stays free of TensorFlow."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import CLASS_NAMES, DataError, default_data_dir, list_records, load_data, read_labels_csv
from training.train import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_folder(tmp_path: Path, count: int = 3) -> Path:
    """A small folder from real CT files: PNG copies, one JPEG, a stray text file, labels.csv."""
    source = default_data_dir("ct")
    rows = list(csv.DictReader((source / "labels.csv").open()))
    chosen = [r for r in rows if r["label"] == "cancer"][:count] + [r for r in rows if r["label"] == "normal"][:count]
    for row in chosen:
        (tmp_path / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["file"], tmp_path / row["file"])
    jpeg = io.BytesIO()
    Image.open(source / chosen[0]["file"]).convert("L").save(jpeg, format="JPEG")
    (tmp_path / "cancer" / "extra.jpg").write_bytes(jpeg.getvalue())
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return tmp_path


def test_reader_finds_images_labels_and_groups(tmp_path: Path) -> None:
    records = list_records(make_folder(tmp_path))
    assert len(records) == 7  # 6 PNG + 1 JPEG, the .txt is skipped
    by_file = {record.file: record for record in records}
    assert by_file["cancer/extra.jpg"].label == 1
    assert by_file["cancer/extra.jpg"].group == "file:cancer/extra.jpg"  # not in labels.csv: its own group
    assert by_file["normal/ct_iqoth_normal_0001.png"].label == 0
    assert by_file["normal/ct_iqoth_normal_0001.png"].group.startswith("normal_b")


def test_loaded_images_are_square_rgb_in_range(tmp_path: Path) -> None:
    data = load_data(make_folder(tmp_path), "ct", 64)
    assert data.images.shape == (7, 64, 64, 3) and data.images.dtype == np.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 255.0
    assert data.labels.tolist().count(1) == 4


def test_digest_changes_when_a_label_changes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    before = load_data(folder, "ct", 32).digest
    shutil.move(folder / "cancer" / "extra.jpg", folder / "normal" / "extra.jpg")
    assert load_data(folder, "ct", 32).digest != before


def test_missing_class_folder_is_explained(tmp_path: Path) -> None:
    (tmp_path / "cancer").mkdir()
    with pytest.raises(DataError, match="normal"):
        list_records(tmp_path)


def test_flip_defaults_per_modality() -> None:
    assert parse_args(["--modality", "xray"]).horizontal_flip is False
    assert parse_args(["--modality", "ct"]).horizontal_flip is True
    assert parse_args(["--modality", "xray", "--flip", "on"]).horizontal_flip is True


def test_xray_records_carry_other_findings_and_patient_groups() -> None:
    """The reader's records agree with labels.csv row by row (counts are derived, never hard-coded)."""
    data_dir = default_data_dir("xray")
    rows = read_labels_csv(data_dir)
    records = list_records(data_dir)
    assert {record.file for record in records} == set(rows)
    for record in records:
        row = rows[record.file]
        assert record.label == CLASS_NAMES.index(row["label"])
        assert record.group == row["patient_id"]
        expected_other = int(row["other_findings"]) if row["other_findings"].strip() else None
        assert record.other_findings == expected_other
    cancers = [record for record in records if record.label == 1]
    # both subsets exist, so the no-other-findings report is never empty
    assert any(record.other_findings == 0 for record in cancers)
    assert any(record.other_findings == 1 for record in cancers)


def test_evaluate_and_training_entry_points_do_not_import_tensorflow() -> None:
    code = (
        "import sys, training.evaluate, training.train, training.data, training.metrics, training.card;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_data_dir_honours_lungledger_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from training.weights import WEIGHTS_FILE, default_weights_path

    monkeypatch.setenv("LUNGLEDGER_SHARED", str(tmp_path))
    assert default_data_dir("ct") == tmp_path.resolve() / "data" / "ct"
    assert default_weights_path() == tmp_path.resolve() / "weights" / WEIGHTS_FILE
    monkeypatch.delenv("LUNGLEDGER_SHARED")
    assert default_data_dir("xray") == (REPO_ROOT / ".." / "shared" / "data" / "xray").resolve()


def test_xray_records_carry_their_source_from_labels_csv() -> None:
    data_dir = default_data_dir("xray")
    rows = read_labels_csv(data_dir)
    records = list_records(data_dir)
    assert {record.source for record in records} == {row["source_dataset"] for row in rows.values()}
    assert all(record.source == rows[record.file]["source_dataset"] for record in records)


def test_evaluate_by_source_reports_each_source_and_benign_nodules() -> None:
    """The shipped X-ray model on its training folder's held-out split, per source, without TensorFlow."""
    import json

    if not (REPO_ROOT / "models" / "xray" / "model.tflite").exists():
        pytest.skip("no exported x-ray model")
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None;"
            "from training.evaluate import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "--modality", "xray", "--split", "validation",
                             "--by-source", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = read_labels_csv(default_data_dir("xray"))
    by_source = report["by_source"]
    assert set(by_source) == {row["source_dataset"] for row in rows.values()}
    assert sum(part["n"] for part in by_source.values()) == report["n"]
    benign = report["benign_nodules"]
    assert benign["n"] == len(list((default_data_dir("xray_benign_nodule")).glob("*.png"))) > 0
    assert 0 <= benign["called_cancer"] <= benign["n"] and 0.0 <= benign["auc_benign_vs_normal"] <= 1.0
