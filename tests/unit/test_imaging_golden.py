"""The hardened decoder gives exactly the pixels the original decoder gave for every real image.

``tests/data/decoded_pixels.json`` was written by ``tests/data/make_decoded_digests.py``
from the decoder as it was before the upload budgets (commit a819a1a): one digest of
the decoded float32 pixels per PNG, JPEG and DICOM file under ``../shared/data``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.data.make_decoded_digests import SUFFIXES, digest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "decoded_pixels.json"


def test_every_real_image_decodes_to_the_same_pixels(shared_data_dir: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    paths = sorted(p for p in shared_data_dir.rglob("*") if p.suffix.lower() in SUFFIXES)
    assert len(paths) == len(expected) >= 1400
    assert any(p.suffix == ".dcm" for p in paths)
    changed = [name for name in expected if digest(shared_data_dir / name) != expected[name]]
    assert changed == [], f"{len(changed)} images decode differently, e.g. {changed[:5]}"
