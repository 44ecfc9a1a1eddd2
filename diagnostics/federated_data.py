"""A site's labelled folder for federated rounds: pooled LiteRT features, computed once and cached.

The folder is laid out like the training folders (``cancer/``, ``normal/``, an
optional ``labels.csv`` with ``patient_id`` / ``series_block`` for grouping and
``source_dataset``). Every image goes through the shipped model exactly as at
serving time (``decode_image`` -> ``LiteRTModel.prepare_input`` with the model's
harmonisation -> LiteRT) and the 7x7x1280 feature map is averaged to 1280 values.

The cache is two files per (model, folder content) digest: ``<digest>.npy``
(float32 features, read with ``allow_pickle=False``) and ``<digest>.json``
(files, labels, groups, sources and the SHA-256 of the ``.npy`` bytes, checked on
load). Images never leave the site; neither do these features.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diagnostics.federated import Preconditioner
from diagnostics.imaging import decode_image
from diagnostics.model import LiteRTModel
from diagnostics.split import SPLIT_SEED, split_three

CLASS_NAMES = ("normal", "cancer")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
GROUP_COLUMNS = ("patient_id", "series_block")
CACHE_VERSION = 1


@dataclass(frozen=True)
class SiteImage:
    file: str
    label: int
    group: str
    source: str


@dataclass(frozen=True)
class SiteFeatures:
    """Pooled features of a site's images, their labels, groups and sources, and the cache digest."""

    images: tuple[SiteImage, ...]
    features: np.ndarray  # float32 (n, 1280)
    digest: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([image.label for image in self.images], dtype=np.int64)

    def select(self, keep: Callable[[SiteImage], bool]) -> SiteFeatures:
        indices = [index for index, image in enumerate(self.images) if keep(image)]
        return SiteFeatures(tuple(self.images[i] for i in indices), self.features[indices], self.digest)

    def split(self, seed: int = SPLIT_SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The grouped train / tuning / validation split (``diagnostics.split.split_three``)."""
        parts = split_three([image.group for image in self.images], self.labels, seed)
        return {name: (self.features[indices], self.labels[indices]) for name, indices in parts.items()}


def list_site_images(data_dir: Path) -> list[SiteImage]:
    """Images under ``cancer/`` and ``normal/`` sorted by path, with groups and sources from labels.csv."""
    data_dir = Path(data_dir)
    rows: dict[str, dict[str, str]] = {}
    if (data_dir / "labels.csv").is_file():
        with (data_dir / "labels.csv").open(newline="", encoding="utf-8") as handle:
            rows = {row["file"]: row for row in csv.DictReader(handle) if row.get("file")}
    images = []
    for label, class_name in enumerate(CLASS_NAMES):
        for path in sorted((data_dir / class_name).rglob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            relative = path.relative_to(data_dir).as_posix()
            row = rows.get(relative, {})
            group = next((row[column] for column in GROUP_COLUMNS if row.get(column)), "") or f"file:{relative}"
            images.append(SiteImage(relative, label, group, row.get("source_dataset", "").strip()))
    if not images:
        raise FileNotFoundError(f"no labelled images under {data_dir}/cancer or {data_dir}/normal")
    return sorted(images, key=lambda image: image.file)


def compute_site_digest(data_dir: Path, images: Sequence[SiteImage], model_id: str, harmonisation: str) -> str:
    digest = hashlib.sha256(f"site-features-v{CACHE_VERSION}\t{model_id}\t{harmonisation}\n".encode())
    for image in images:
        content = hashlib.sha256((Path(data_dir) / image.file).read_bytes()).hexdigest()
        digest.update(f"{image.file}\t{image.label}\t{image.group}\t{image.source}\t{content}\n".encode())
    return digest.hexdigest()


def extract_features(model: LiteRTModel, data_dir: Path, images: Sequence[SiteImage], batch: int = 8) -> np.ndarray:
    """Pooled features of every image through the model, as served (blocking: run it in an executor)."""
    out = []
    for start in range(0, len(images), batch):
        tensors = np.stack([
            model.prepare_input(decode_image((Path(data_dir) / image.file).read_bytes(), model.card.modality).pixels)
            for image in images[start:start + batch]])
        _, features = model.predict(tensors)
        out.append(features.mean(axis=(1, 2)).astype(np.float32))
    return np.concatenate(out)


def load_site_features(model: LiteRTModel, data_dir: Path, cache_dir: Path) -> SiteFeatures:
    """Features of the site's folder, from the cache when its digest and checksum match, else computed and stored."""
    images = list_site_images(data_dir)
    digest = compute_site_digest(data_dir, images, model.card.model_id, model.harmonisation)
    cache_dir = Path(cache_dir)
    cached = _read_cache(cache_dir, digest, len(images), model.card.head_weights.size)
    if cached is not None:
        return SiteFeatures(tuple(images), cached, digest)
    features = extract_features(model, data_dir, images)
    _write_cache(cache_dir, digest, images, features)
    return SiteFeatures(tuple(images), features, digest)


def _read_cache(cache_dir: Path, digest: str, count: int, width: int) -> np.ndarray | None:
    try:
        data = (cache_dir / f"{digest}.npy").read_bytes()
        meta = json.loads((cache_dir / f"{digest}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("npy_sha256") != hashlib.sha256(data).hexdigest():
        return None  # a damaged or replaced cache file is recomputed, never trusted
    features: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    if features.shape != (count, width) or features.dtype != np.float32 or not np.all(np.isfinite(features)):
        return None
    return features


def _write_cache(cache_dir: Path, digest: str, images: Sequence[SiteImage], features: np.ndarray) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, features.astype(np.float32), allow_pickle=False)
    data = buffer.getvalue()
    (cache_dir / f"{digest}.npy").write_bytes(data)
    meta = {"version": CACHE_VERSION, "digest": digest, "npy_sha256": hashlib.sha256(data).hexdigest(),
            "images": [[image.file, image.label, image.group, image.source] for image in images]}
    (cache_dir / f"{digest}.json").write_text(json.dumps(meta), encoding="utf-8")


def get_preconditioner(model: LiteRTModel) -> Preconditioner:
    """The shared step scale from the model's gate statistics (identity for a model without a gate)."""
    if model.gate is None:
        return Preconditioner.identity(model.card.head_weights.size)
    gaussian = model.gate.distance
    return Preconditioner.from_gaussian(gaussian.mean, gaussian.basis, gaussian.variances)
