"""Attacks reproduced: uploads that amplify in the decoder, measured in a child process.

Plan (each file is decoded in a fresh child process, tests/rss_probe.py, whose
peak resident memory above its warmed-up baseline is measured):
1. A 3 MB Deflated DICOM whose data set inflates to 3 GB: refused after at most
   40 MiB of inflation, under 300 MB extra RSS (the old decoder inflated it whole).
2. A JPEG baseline DICOM declaring 512x512 holding a 13000x13000 frame: refused
   from the frame header, before decoding.
3. An RLE DICOM declaring 512x512 whose twelve segments each decode to 6320x6320
   bytes: refused from the segment scan, before decoding.
4. A 115 KB PNG of 39.7 megapixels of RGB: refused from its header.
Then the reverse: honest compressed DICOM (RLE, JPEG, deflated) still decode to
the same pixels as the native file.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnostics.imaging import ImageError, decode_image
from tests import bombs
from tests.conftest import DATA_DIR, REPO_ROOT

RSS_BUDGET_MIB = 300
WARMUP = DATA_DIR / "dicom" / "ct_lpctdx_cancer_0.dcm"


def probe(tmp_path: Path, data: bytes, modality: str = "ct") -> dict:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    completed = subprocess.run([sys.executable, "-m", "tests.rss_probe", str(path), modality, str(WARMUP)],
                               check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"{report}")
    return report


@pytest.mark.parametrize(("build", "code"), [
    (bombs.make_deflated_dicom_bomb, "too-many-pixels"),
    (bombs.make_jpeg_dicom, "corrupt-image"),
    (bombs.make_rle_dicom_bomb, "corrupt-image"),
    (bombs.make_rgb_png_bomb, "too-many-pixels"),
], ids=["deflated-dicom-3GB", "jpeg-dicom-13000px", "rle-dicom-6320px-32bit-rgb", "png-39.7MP-rgb"])
def test_amplifying_upload_is_refused_within_the_memory_budget(tmp_path: Path, build, code: str) -> None:
    data = build()
    assert len(data) < 8 * 1024 * 1024
    report = probe(tmp_path, data)
    assert report["outcome"] == code
    assert report["extra_mib"] < RSS_BUDGET_MIB


def native_ct_pixels() -> np.ndarray:
    import pydicom

    return pydicom.dcmread(WARMUP).pixel_array


def test_honest_rle_dicom_decodes_like_its_native_original() -> None:
    pixels = (native_ct_pixels() // 8).clip(0, 255).astype(np.uint8)
    decoded = decode_image(bombs.make_rle_dicom(pixels), "ct").pixels
    expected = np.clip((pixels.astype(np.float32) - (-600.0 - 750.0)) * (255.0 / 1500.0), 0, 255)
    np.testing.assert_array_equal(decoded, expected.astype(np.float32))


def test_honest_deflated_dicom_decodes_to_the_same_pixels() -> None:
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = pydicom.dcmread(WARMUP)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    deflated = buffer.getvalue()
    assert len(deflated) < WARMUP.stat().st_size  # really deflated
    np.testing.assert_array_equal(decode_image(deflated, "ct").pixels,
                                  decode_image(WARMUP.read_bytes(), "ct").pixels)


def test_honest_jpeg_dicom_of_the_declared_size_decodes() -> None:
    decoded = decode_image(bombs.make_jpeg_dicom(declared=512, real=512), "ct").pixels
    assert decoded.shape == (512, 512)


def test_deflated_dicom_larger_than_the_inflate_limit_is_refused_in_process() -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(bombs.make_deflated_dicom_bomb(inflated_bytes=128 * 1024 * 1024), "ct")
    assert caught.value.code == "too-many-pixels"
    assert "inflates to more than" in caught.value.message
