"""Builders and fixtures shared by the diagnostics tests (this module holds no tests).

Real inputs only: images from the shared data folder, DICOM files shipped with
pydicom, and the LiteRT models exported by ``training/`` under ``models/``
(``LUNGLEDGER_MODELS`` overrides the folder).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("LUNGLEDGER_MODELS", REPO_ROOT / "models"))
MODALITIES = ("ct", "xray")


def get_pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def require_models(*modalities: str) -> Path:
    """The models folder, or skip (with the reason) if a needed model was not exported yet."""
    for modality in modalities:
        if not (MODELS_DIR / modality / "model.tflite").exists():
            pytest.skip(f"no exported {modality} model at {MODELS_DIR / modality}; run training first")
    return MODELS_DIR


def list_data_images(data_dir: Path, modality: str, label: str | None = None) -> list[Path]:
    pattern = f"{label}/*.png" if label else "*/*.png"
    return sorted((data_dir / modality).glob(pattern))


def read_data_image(data_dir: Path, modality: str, label: str = "cancer", index: int = 0) -> bytes:
    return list_data_images(data_dir, modality, label)[index].read_bytes()


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def make_png_bomb(width: int, height: int, with_pixels: bool) -> bytes:
    """A greyscale PNG whose header claims width x height.

    With ``with_pixels`` the IDAT really holds every (zero) row, so the file is
    a genuine decompression bomb: tiny on disk, huge once decoded.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if with_pixels:
        compressor = zlib.compressobj(9)
        row = b"\x00" * (width + 1)
        data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    else:
        data = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def make_jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOF0) of a real JPEG to claim another size."""
    position = jpeg.index(b"\xff\xc0")
    return jpeg[:position + 5] + struct.pack(">HH", height, width) + jpeg[position + 9:]


def make_xray_dicom(pixels: np.ndarray, *, monochrome1: bool, inverting_voi_lut: bool = False) -> bytes:
    """Wrap a real 8-bit radiograph as a 12-bit DX DICOM file.

    ``monochrome1``: stored values are inverted (air bright) and the file says
    MONOCHROME1. ``inverting_voi_lut``: stored values are inverted, the file
    says MONOCHROME2 and carries a VOI LUT that inverts them back.
    A correct decoder returns the original picture in both cases.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    twelve_bit = (pixels.astype(np.uint16) * 16).astype(np.uint16)
    inverted = monochrome1 or inverting_voi_lut
    stored = (4095 - twelve_bit).astype(np.uint16) if inverted else twelve_bit
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.BodyPartExamined = "CHEST"
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    if inverting_voi_lut:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.add_new(0x00283006, "US", list(range(4095, -1, -1)))  # LUT Data
        dataset.VOILUTSequence = Sequence([item])
    else:
        dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = stored.tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def run_litert_directly(model_path: Path, tensor: np.ndarray, probability_output: int) -> float:
    """The exported model, invoked on its own with a fresh interpreter on one tensor."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
    interpreter.invoke()
    output = interpreter.get_output_details()[probability_output]
    return float(interpreter.get_tensor(output["index"])[0, 0])


