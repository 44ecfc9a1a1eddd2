"""Folder reader for labelled training/evaluation images (no TensorFlow here).

A data folder holds ``cancer/`` and ``normal/`` subfolders with PNG, JPEG or
DICOM files and, optionally, a ``labels.csv`` (columns ``file``, and
``patient_id`` / ``series_block`` for grouping, ``other_findings`` for X-ray).
Every image is decoded with :func:`diagnostics.imaging.decode_image` and turned
into model input with :func:`diagnostics.preprocessing.to_model_input`, the
same two functions the node uses at inference time.

This module must stay free of TensorFlow: ``training.evaluate`` imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diagnostics.imaging import decode_image
from diagnostics.preprocessing import DEFAULT_HARMONISATION, to_model_input

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ("normal", "cancer")  # index = label: 0 normal, 1 cancer
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""})
GROUP_COLUMNS = ("patient_id", "series_block")
LABELS_FILE = "labels.csv"


class DataError(ValueError):
    """The data folder cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Record:
    """One labelled image: path relative to the data folder, label, split group."""

    file: str
    label: int
    group: str
    other_findings: int | None = None
    source: str = ""


@dataclass(frozen=True)
class LoadedData:
    """Decoded and preprocessed images with their records and a content digest."""

    records: tuple[Record, ...]
    images: np.ndarray  # float32 (n, size, size, 3) in [0, 255]
    labels: np.ndarray  # int32 (n,)
    digest: str


SHARED_ENV = "LUNGLEDGER_SHARED"


def default_shared_dir() -> Path:
    """``$LUNGLEDGER_SHARED`` when set, else ``../shared`` relative to the repository root."""
    configured = os.environ.get(SHARED_ENV, "").strip()
    return Path(configured).expanduser().resolve() if configured else (REPO_ROOT / ".." / "shared").resolve()


def default_data_dir(modality: str) -> Path:
    """``<shared>/data/<modality>`` (see :func:`default_shared_dir`)."""
    return default_shared_dir() / "data" / modality


def read_labels_csv(data_dir: Path) -> dict[str, dict[str, str]]:
    """Rows of ``labels.csv`` keyed by relative file path ({} when absent)."""
    path = data_dir / LABELS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle) if row.get("file")}


def list_records(data_dir: Path) -> list[Record]:
    """All images under ``cancer/`` and ``normal/``, sorted by path."""
    data_dir = Path(data_dir)
    missing = [name for name in CLASS_NAMES if not (data_dir / name).is_dir()]
    if missing:
        raise DataError(f"{data_dir} must contain the subfolders cancer/ and normal/ (missing: {', '.join(missing)})")
    rows = read_labels_csv(data_dir)
    records = []
    for label, class_name in enumerate(CLASS_NAMES):
        for path in sorted((data_dir / class_name).rglob("*")):
            if not _is_image_candidate(path):
                continue
            relative = path.relative_to(data_dir).as_posix()
            records.append(_make_record(relative, label, rows.get(relative, {})))
    if not records:
        raise DataError(f"no images found under {data_dir}/cancer or {data_dir}/normal")
    return sorted(records, key=lambda record: record.file)


def _is_image_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _make_record(relative: str, label: int, row: dict[str, str]) -> Record:
    group = next((row[column] for column in GROUP_COLUMNS if row.get(column)), "")
    other = row.get("other_findings", "")
    return Record(
        file=relative,
        label=label,
        group=group or f"file:{relative}",  # no group known: each image is its own group
        other_findings=int(other) if other.strip() else None,
        source=row.get("source_dataset", "").strip(),
    )


def load_data(data_dir: Path, modality: str, size: int, records: list[Record] | None = None,
              harmonisation: str = DEFAULT_HARMONISATION,
              reference_cdf: Sequence[float] | np.ndarray | None = None) -> LoadedData:
    """Decode and preprocess every record (``reference_cdf``: the model's, for 'match'); the digest covers names,
    labels and bytes."""
    data_dir = Path(data_dir)
    records = list_records(data_dir) if records is None else records
    images = np.empty((len(records), size, size, 3), dtype=np.float32)
    digest = hashlib.sha256()
    for index, record in enumerate(records):
        data = (data_dir / record.file).read_bytes()
        digest.update(f"{record.file}\t{record.label}\t{hashlib.sha256(data).hexdigest()}\n".encode())
        images[index] = to_model_input(decode_image(data, modality).pixels, size, harmonisation, reference_cdf)
    labels = np.array([record.label for record in records], dtype=np.int32)
    return LoadedData(records=tuple(records), images=images, labels=labels, digest=digest.hexdigest())


def compute_digest(data_dir: Path, records: list[Record] | tuple[Record, ...]) -> str:
    """The folder digest :func:`load_data` computes, without decoding (SHA-256 over name, label, file hash)."""
    digest = hashlib.sha256()
    for record in records:
        data = (Path(data_dir) / record.file).read_bytes()
        digest.update(f"{record.file}\t{record.label}\t{hashlib.sha256(data).hexdigest()}\n".encode())
    return digest.hexdigest()


def select(data: LoadedData, indices: np.ndarray) -> LoadedData:
    """A subset of loaded data (the digest is kept: it names the whole folder)."""
    indices = np.asarray(indices, dtype=np.int64)
    return LoadedData(
        records=tuple(data.records[i] for i in indices),
        images=data.images[indices],
        labels=data.labels[indices],
        digest=data.digest,
    )
