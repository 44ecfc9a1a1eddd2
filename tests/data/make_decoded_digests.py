"""Write tests/data/decoded_pixels.json: a digest of the decoded pixels of every real image in ../shared/data.

Run once from the code before the decoder was hardened (commit a819a1a); the test
``tests/unit/test_imaging_golden.py`` checks that the decoder still gives exactly these pixels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from diagnostics.imaging import ImageError, decode_image

REPO_ROOT = Path(__file__).resolve().parents[2]

DATA_DIR = REPO_ROOT.parent / "shared" / "data"
SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


def modality_of(path: Path) -> str:
    return "xray" if "xray" in path.parts[-3:-1] or path.parts[-2].startswith("xray") else "ct"


def digest(path: Path) -> str:
    try:
        decoded = decode_image(path.read_bytes(), modality_of(path))
    except ImageError as error:
        return f"refused:{error.code}"
    pixels = decoded.pixels
    body = f"{pixels.dtype}{pixels.shape}".encode() + pixels.tobytes()
    return hashlib.sha256(body).hexdigest()[:24]


def main() -> None:
    paths = sorted(p for p in DATA_DIR.rglob("*") if p.suffix.lower() in SUFFIXES)
    digests = {str(p.relative_to(DATA_DIR)): digest(p) for p in paths}
    out = Path(__file__).with_name("decoded_pixels.json")
    out.write_text(json.dumps(digests, indent=0, sort_keys=True) + "\n")
    print(f"{len(digests)} images -> {out}")


if __name__ == "__main__":
    main()
