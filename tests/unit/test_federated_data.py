"""A site's pooled features (diagnostics.federated_data): real images through the shipped X-ray model, cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from diagnostics.federated_data import get_preconditioner, list_site_images, load_site_features
from diagnostics.imaging import decode_image
from diagnostics.model import LiteRTModel

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def xray_model() -> LiteRTModel:
    return LiteRTModel(REPO_ROOT / "models" / "xray", num_threads=1)


@pytest.fixture()
def small_site(shared_data_dir: Path, tmp_path: Path) -> Path:
    """Two images of each class from the real X-ray folder, with their labels.csv rows."""
    source = shared_data_dir / "xray"
    site = tmp_path / "site"
    lines = (source / "labels.csv").read_text(encoding="utf-8").splitlines()
    kept = [lines[0]]
    for class_name in ("cancer", "normal"):
        for path in sorted((source / class_name).glob("*.png"))[:2]:
            (site / class_name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, site / class_name / path.name)
            kept += [line for line in lines if line.startswith(f"{class_name}/{path.name},")]
    (site / "labels.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return site


def test_features_are_the_models_pooled_features_and_are_cached(xray_model: LiteRTModel, small_site: Path,
                                                                 tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_site_features(xray_model, small_site, cache)
    assert first.features.shape == (4, 1280) and list(first.labels) == [1, 1, 0, 0]
    assert all(image.source for image in first.images)  # source_dataset read from labels.csv
    # the card's head on these features gives the model's own probability for the same image, as served
    image = first.images[0]
    tensor = xray_model.prepare_input(decode_image((small_site / image.file).read_bytes(), "xray").pixels)
    served, _ = xray_model.predict(tensor[None])
    from_features = 1 / (1 + np.exp(-(first.features[0] @ xray_model.card.head_weights + xray_model.card.head_bias)))
    assert from_features == pytest.approx(float(served[0]), abs=1e-4)
    assert sorted(path.suffix for path in cache.iterdir()) == [".json", ".npy"]
    again = load_site_features(xray_model, small_site, cache)
    assert again.digest == first.digest and np.array_equal(again.features, first.features)


def test_a_tampered_cache_is_recomputed_not_trusted(xray_model: LiteRTModel, small_site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_site_features(xray_model, small_site, cache)
    npy = cache / f"{first.digest}.npy"
    buffer = bytearray(npy.read_bytes())
    buffer[-4:] = b"\x00\x00\xc0\x7f"  # last value -> NaN
    npy.write_bytes(bytes(buffer))
    again = load_site_features(xray_model, small_site, cache)
    assert np.array_equal(again.features, first.features)
    assert json.loads((cache / f"{first.digest}.json").read_text())["npy_sha256"]


def test_a_changed_folder_gets_a_new_digest(xray_model: LiteRTModel, small_site: Path, tmp_path: Path) -> None:
    before = load_site_features(xray_model, small_site, tmp_path / "cache")
    victim = sorted((small_site / "normal").iterdir())[0]
    victim.rename(small_site / "cancer" / victim.name)  # relabelled
    after = load_site_features(xray_model, small_site, tmp_path / "cache")
    assert after.digest != before.digest and list(after.labels).count(1) == 3


def test_site_listing_refuses_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "cancer").mkdir()
    with pytest.raises(FileNotFoundError):
        list_site_images(tmp_path)


def test_the_shared_preconditioner_comes_from_the_model_and_is_the_same_everywhere(xray_model: LiteRTModel) -> None:
    first, second = get_preconditioner(xray_model), get_preconditioner(xray_model)
    assert first.scale.shape == (1280,) and np.all(first.scale > 0) and 0 < first.step < 4
    assert np.array_equal(first.scale, second.scale) and first.step == second.step
