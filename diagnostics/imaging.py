"""Decoding of uploaded or on-disk medical images into a greyscale array.

One decoder for training and inference: PNG, JPEG and DICOM. Every refusal is
an :class:`ImageError` carrying a stable reason code, so callers (the HTTP API,
the training folder reader) can report it without guessing.

DICOM handling:
- CT: stored values -> Hounsfield units with RescaleSlope/RescaleIntercept,
  then the lung window (level -600, width 1500) mapped to 0..255;
- X-ray: the VOI LUT / window in the file is applied, MONOCHROME1 is inverted
  so that air is dark in every image, then the range is mapped to 0..255.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
LUNG_WINDOW_LEVEL = -600.0
LUNG_WINDOW_WIDTH = 1500.0
MODALITIES = ("xray", "ct")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageError(ValueError):
    """An image was refused; ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image (float32, 0..255) and the format it came from."""

    pixels: np.ndarray
    source_format: str


def sniff_format(data: bytes) -> str:
    """Return 'png', 'jpeg' or 'dicom' from the file's magic bytes."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    raise ImageError("unsupported-format", "only PNG, JPEG and DICOM (Part 10) files are accepted")


def decode_image(data: bytes, modality: str) -> DecodedImage:
    """Decode file bytes to a greyscale float32 image in 0..255."""
    if modality not in MODALITIES:
        raise ImageError("bad-modality", f"modality must be one of {MODALITIES}, got {modality!r}")
    if not data:
        raise ImageError("empty-file", "the uploaded file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError("file-too-large", f"file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    source_format = sniff_format(data)
    if source_format == "dicom":
        pixels = _decode_dicom(data, modality)
    else:
        pixels = _decode_raster(data)
    height, width = pixels.shape
    if min(height, width) < MIN_SIDE:
        raise ImageError("image-too-small", f"image is {width}x{height}; each side must be at least {MIN_SIDE}")
    return DecodedImage(pixels=pixels, source_format=source_format)


def _check_pixel_count(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError("too-many-pixels", f"image is {width}x{height}; the limit is {MAX_PIXELS} pixels")


def _decode_raster(data: bytes) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_pixel_count(*image.size)
                image.load()
                return _to_gray(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("too-many-pixels", str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError("corrupt-image", f"the image could not be decoded: {error}") from error


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return ((values - low) * scale).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    if image.mode != "L":
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        check_greyscale(rgb)
        return rgb.mean(axis=2).astype(np.float32)
    return np.asarray(image, dtype=np.float32)


COLOUR_CHROMA_LIMIT = 12.0
COLOUR_FRACTION_LIMIT = 0.05


def check_greyscale(rgb: np.ndarray) -> None:
    """Refuse colour photographs: radiographs and CT slices are grey.

    A few coloured annotation marks are tolerated; a colour image is one where
    more than 5% of pixels have a chroma (max - min channel) above 12.
    """
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    fraction = float(np.mean(chroma > COLOUR_CHROMA_LIMIT))
    if fraction > COLOUR_FRACTION_LIMIT:
        raise ImageError(
            "not-greyscale",
            f"{fraction:.0%} of pixels are coloured; chest X-rays and CT slices are greyscale images",
        )


def _decode_dicom(data: bytes, modality: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        _check_pixel_count(columns, rows)
        stored = dataset.pixel_array
    except ImageError:
        raise
    except (InvalidDicomError, AttributeError, KeyError, ValueError, TypeError, OSError, RuntimeError) as error:
        raise ImageError("corrupt-image", f"the DICOM file could not be decoded: {error}") from error
    if stored.ndim != 2:
        raise ImageError("unsupported-format", f"DICOM pixel data has shape {stored.shape}; one greyscale frame is required")
    if modality == "ct":
        return window_ct(dataset, stored)
    return window_xray(dataset, stored)


def window_ct(dataset: object, stored: np.ndarray) -> np.ndarray:
    """Stored values -> Hounsfield units -> lung window -> 0..255."""
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    hounsfield = stored.astype(np.float32) * slope + intercept
    return apply_window(hounsfield, LUNG_WINDOW_LEVEL, LUNG_WINDOW_WIDTH)


def apply_window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """Linear window: level - width/2 -> 0, level + width/2 -> 255, clipped."""
    low = level - width / 2.0
    scaled = (values.astype(np.float32) - low) * (255.0 / width)
    return np.clip(scaled, 0.0, 255.0).astype(np.float32)


def window_xray(dataset: object, stored: np.ndarray) -> np.ndarray:
    """Apply the file's VOI LUT or window, honour MONOCHROME1, map to 0..255."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(stored, dataset), dataset).astype(np.float32)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(np.float32)
