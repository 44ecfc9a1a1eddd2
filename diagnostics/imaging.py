"""Decoding of uploaded or on-disk medical images into a greyscale array.

One decoder for training and inference: PNG, JPEG and DICOM. Every refusal is
an :class:`ImageError` (a :class:`~diagnostics.errors.DiagnosisError`) carrying
a stable reason code, so callers (the HTTP API, the training folder reader) can
report it without guessing. Uploads are untrusted: sizes are checked from the
header before any pixel is decoded, and every parser failure becomes a
reason-coded refusal rather than an arbitrary exception.

DICOM handling:
- the file's Modality tag must match the declared modality (CT for ``ct``;
  CR, DX or RG for ``xray``) and BodyPartExamined, when present, must name the
  chest; one greyscale frame only;
- CT: stored values -> Hounsfield units with RescaleSlope/RescaleIntercept,
  then the lung window (level -600, width 1500) mapped to 0..255;
- X-ray: the modality LUT and the VOI LUT / window in the file are applied,
  MONOCHROME1 (and an INVERSE presentation LUT) is inverted so that air is
  dark in every image, then the range is mapped to 0..255.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from diagnostics.errors import DiagnosisError

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
LUNG_WINDOW_LEVEL = -600.0
LUNG_WINDOW_WIDTH = 1500.0
MODALITIES = ("xray", "ct")

# DICOM Modality (0008,0060) values accepted for each declared modality.
DICOM_MODALITIES = {"ct": frozenset({"CT"}), "xray": frozenset({"CR", "DX", "RG", "DR"})}
# BodyPartExamined (0018,0015) values are free text in practice; accept any
# that mentions one of these, refuse any other non-empty value.
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "TORSO", "TRUNK", "WHOLEBODY", "WHOLE BODY")

COLOUR_CHROMA_LIMIT = 12.0
COLOUR_FRACTION_LIMIT = 0.05

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_RASTER_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
# What a malformed upload can make the third-party parsers raise.
_PARSER_ERRORS = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
                  AttributeError, EOFError, RuntimeError, struct.error, zlib.error)


class ImageError(DiagnosisError):
    """An image was refused; ``code`` is a stable reason code."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image (float32, 0..255) and the format it came from."""

    pixels: np.ndarray
    source_format: str


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits; the defaults are the module constants."""

    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE


DEFAULT_LIMITS = ImageLimits()


def sniff_format(data: bytes) -> str:
    """Return 'png', 'jpeg' or 'dicom' from the file's magic bytes."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    raise ImageError("unsupported-format", "only PNG, JPEG and DICOM (Part 10) files are accepted")


def decode_image(data: bytes, modality: str, limits: ImageLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode file bytes to a greyscale float32 image in 0..255."""
    validate_modality(modality)
    if not data:
        raise ImageError("empty-file", "the uploaded file is empty; choose the image file again")
    if len(data) > limits.max_file_bytes:
        raise ImageError("file-too-large", f"file is {len(data)} bytes; the limit is {limits.max_file_bytes}")
    source_format = sniff_format(data)
    if source_format == "dicom":
        pixels = _decode_dicom(data, modality, limits)
    else:
        pixels = _decode_raster(data, source_format, limits)
    height, width = pixels.shape
    if min(height, width) < limits.min_side:
        raise ImageError("image-too-small",
                         f"image is {width}x{height}; each side must be at least {limits.min_side} pixels")
    return DecodedImage(pixels=pixels, source_format=source_format)


def validate_modality(modality: object) -> None:
    """Raise ``bad-modality`` unless ``modality`` is one of :data:`MODALITIES`."""
    if modality not in MODALITIES:
        raise ImageError("bad-modality", f"modality must be one of {MODALITIES}, got {modality!r}")


def _check_pixel_count(width: int, height: int, limits: ImageLimits, frames: int = 1) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("corrupt-image", f"image header gives an impossible size {width}x{height}")
    if width * height * frames > limits.max_pixels:
        raise ImageError("too-many-pixels",
                         f"image is {width}x{height}; the limit is {limits.max_pixels} pixels")


def _decode_raster(data: bytes, source_format: str, limits: ImageLimits) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_RASTER_FORMATS[source_format]]) as image:
                _check_pixel_count(*image.size, limits)
                image.load()
                return _to_gray(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("too-many-pixels", str(error)) from error
    except _PARSER_ERRORS as error:
        raise ImageError("corrupt-image", f"the image could not be decoded ({error}); "
                                          "it may be truncated or damaged, export it again") from error


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _stretch(np.asarray(image, dtype=np.float32))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    if image.mode != "L":
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        check_greyscale(rgb)
        return rgb.mean(axis=2).astype(np.float32)
    return np.asarray(image, dtype=np.float32)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the full range of ``values`` linearly to 0..255 (constant -> 0)."""
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high):
        raise ImageError("corrupt-image", "the image contains non-finite pixel values")
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((values - low) * scale).astype(np.float32)


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


def _decode_dicom(data: bytes, modality: str, limits: ImageLimits) -> np.ndarray:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data))
            validate_dicom_header(dataset, modality, limits)
            validate_transfer_syntax(dataset)
            stored = dataset.pixel_array
    except DiagnosisError:
        raise
    except (*_PARSER_ERRORS, pydicom.errors.InvalidDicomError) as error:
        raise ImageError("corrupt-image", f"the DICOM file could not be decoded ({error}); "
                                          "it may be truncated or damaged, export it again") from error
    if stored.ndim == 3:
        check_greyscale(stored.astype(np.float32))
        stored = stored.mean(axis=2)
    if stored.ndim != 2:
        raise ImageError("unsupported-format", f"DICOM pixel data has shape {stored.shape}; one greyscale frame is required")
    if modality == "ct":
        return window_ct(dataset, stored)
    return window_xray(dataset, stored)


def validate_dicom_header(dataset: Any, modality: str, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Check a DICOM header before its pixels are decoded: image present, size,
    one frame, modality and body part as declared."""
    if "PixelData" not in dataset:
        if "Rows" in dataset:
            raise ImageError("corrupt-image", "the DICOM file describes an image but holds no pixel data; "
                                              "it may be truncated, export it again")
        raise ImageError("unsupported-format", "the DICOM file holds no image (no PixelData)")
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    _check_pixel_count(columns, rows, limits, frames)
    if frames != 1:
        raise ImageError("unsupported-format", f"the DICOM file has {frames} frames; upload one slice or radiograph")
    file_modality = str(getattr(dataset, "Modality", "") or "").upper()
    if file_modality and file_modality not in DICOM_MODALITIES[modality]:
        raise ImageError("wrong-modality", f"the DICOM file's modality is {file_modality}, "
                                           f"not {'/'.join(sorted(DICOM_MODALITIES[modality]))} as '{modality}' requires")
    body_part = str(getattr(dataset, "BodyPartExamined", "") or "").upper()
    if body_part and not any(part in body_part for part in CHEST_BODY_PARTS):
        raise ImageError("not-a-chest-image", f"the DICOM file says the body part is {body_part}, not the chest")
    interpretation = str(getattr(dataset, "PhotometricInterpretation", "") or "")
    if interpretation == "PALETTE COLOR":
        raise ImageError("not-greyscale", "the DICOM image is a palette colour image, not a greyscale radiograph")


def validate_transfer_syntax(dataset: Any) -> None:
    """Refuse compressed pixel data that no installed decoder can read."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise ImageError("unsupported-format", f"DICOM transfer syntax {syntax.name} cannot be decoded here; "
                                               "export the image uncompressed or as PNG")


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


def window_xray(dataset: Any, stored: np.ndarray) -> np.ndarray:
    """Apply the file's modality and VOI LUT or window, honour MONOCHROME1, map to 0..255."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(stored, dataset), dataset).astype(np.float32)
    scaled = _stretch(values)
    inverted = getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1"
    if getattr(dataset, "PresentationLUTShape", "") == "INVERSE":
        inverted = not inverted
    if inverted:
        scaled = 255.0 - scaled
    return scaled.astype(np.float32)
