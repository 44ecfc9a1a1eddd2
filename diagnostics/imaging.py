"""Decoding of uploaded or on-disk medical images into a greyscale array.

One decoder for training and inference: PNG, JPEG and DICOM. Every refusal is
an :class:`ImageError` (a :class:`~diagnostics.errors.DiagnosisError`) carrying
a stable reason code, so callers (the HTTP API, the training folder reader) can
report it without guessing. Uploads are untrusted: the size, colour type,
bit depth and frames are read from the header, the decode's working memory is
estimated and checked against a per-image and a process-wide budget
(``diagnostics.decode_limits``) before any pixel is decoded, one decode has a
deadline, and every parser failure becomes a reason-coded refusal rather than
an arbitrary exception. DICOM specifics are in ``diagnostics.dicom``.
"""

from __future__ import annotations

import functools
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from diagnostics.decode_limits import (
    DECODE_BUDGET,
    DEFAULT_LIMITS,
    FLOAT_WORK_BYTES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    DeadlineReader,
    DecodeDeadline,
    ImageError,
    ImageLimits,
    check_decode_bytes,
    check_pixel_count,
)
from diagnostics.dicom import (
    CHEST_WORDS,
    DICOM_MODALITIES,
    LUNG_WINDOW_LEVEL,
    LUNG_WINDOW_WIDTH,
    apply_window,
    decode_dicom,
    window_ct,
    window_xray,
)
from diagnostics.greyscale import (
    COLOUR_CHROMA_LIMIT,
    COLOUR_FRACTION_LIMIT,
    check_greyscale,
    grey_from_strips,
    stretch,
)

__all__ = [
    "CHEST_WORDS", "COLOUR_CHROMA_LIMIT", "COLOUR_FRACTION_LIMIT", "DEFAULT_LIMITS", "DICOM_MODALITIES",
    "LUNG_WINDOW_LEVEL", "LUNG_WINDOW_WIDTH", "MAX_FILE_BYTES", "MAX_PIXELS", "MIN_SIDE", "MODALITIES",
    "DecodedImage", "ImageError", "ImageLimits", "apply_window", "check_greyscale", "decode_image",
    "estimate_raster_bytes", "sniff_format", "validate_modality", "window_ct", "window_xray",
]

MODALITIES = ("xray", "ct")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_RASTER_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
# What a malformed upload can make the third-party parsers raise (RecursionError is a
# RuntimeError, OverflowError an ArithmeticError, UnicodeError a ValueError).
_PARSER_ERRORS: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, TypeError, LookupError, AttributeError, EOFError, RuntimeError,
    ArithmeticError, BufferError, struct.error, zlib.error)
# Bytes a pixel takes in Pillow's memory, by mode (multi-band images are 4 bytes a pixel).
_PIL_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
_ORIENTATION = ExifTags.Base.Orientation


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image (float32, 0..255) and the format it came from.

    ``gray8`` is the same image as uint8 when the file itself was 8-bit grey (most
    PNG/JPEG exports), so the hot path need not round the float copy back to 8 bits.
    """

    source_format: str
    gray8: np.ndarray | None = None
    float_pixels: np.ndarray | None = None

    @functools.cached_property
    def pixels(self) -> np.ndarray:
        """float32 (H, W) in 0..255; for an 8-bit file made on first use (the plug-in never needs it)."""
        if self.float_pixels is not None:
            return self.float_pixels
        if self.gray8 is None:
            raise ValueError("a DecodedImage needs gray8 or float_pixels")
        return self.gray8.astype(np.float32)

    def to_uint8(self) -> np.ndarray:
        """The image rounded to 8 bits (the stored 8-bit image when there is one)."""
        if self.gray8 is not None:
            return self.gray8
        rounded: np.ndarray = np.clip(self.pixels + 0.5, 0, 255).astype(np.uint8)
        return rounded


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
    deadline = DecodeDeadline(limits.decode_seconds)
    if source_format == "dicom":
        pixels = decode_dicom(data, modality, limits, deadline, _PARSER_ERRORS)
    else:
        pixels = _decode_raster(data, source_format, limits, deadline)
    deadline.check("converting the image")
    height, width = pixels.shape
    if min(height, width) < limits.min_side:
        raise ImageError("image-too-small",
                         f"image is {width}x{height}; each side must be at least {limits.min_side} pixels")
    if pixels.dtype == np.uint8:
        return DecodedImage(source_format, gray8=pixels)
    return DecodedImage(source_format, float_pixels=pixels)


def validate_modality(modality: object) -> None:
    """Raise ``bad-modality`` unless ``modality`` is one of :data:`MODALITIES`."""
    if modality not in MODALITIES:
        raise ImageError("bad-modality", f"modality must be one of {MODALITIES}, got {modality!r}")


def estimate_raster_bytes(image: Image.Image, rotated: bool) -> int:
    """Working memory of loading and converting a PNG/JPEG to grey (bytes), from its header.

    Pillow's image, a rotated copy when the EXIF orientation asks for one, one
    typed copy for numpy, and the float32 image with one float32 temporary.
    """
    width, height = image.size
    stored = _PIL_PIXEL_BYTES.get(image.mode, 4)
    return width * height * (stored * (3 if rotated else 2) + FLOAT_WORK_BYTES)


def _decode_raster(data: bytes, source_format: str, limits: ImageLimits, deadline: DecodeDeadline) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(DeadlineReader(data, deadline), formats=[_RASTER_FORMATS[source_format]]) as image:
                check_pixel_count(*image.size, limits)
                # A PNG's EXIF may follow its pixels (Pillow loads the image to read it): assume a rotation.
                may_rotate = source_format == "png" or _is_rotated(image)
                cost = estimate_raster_bytes(image, may_rotate)
                check_decode_bytes(cost, *image.size, f"{image.mode}-mode {source_format.upper()}", limits)
                with DECODE_BUDGET.reserve(cost, deadline):
                    image.load()
                    deadline.check("decoding the image")
                    return _to_gray(ImageOps.exif_transpose(image) if _is_rotated(image) else image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("too-many-pixels", str(error)) from error
    except _PARSER_ERRORS as error:
        raise ImageError("corrupt-image", f"the image could not be decoded ({error}); "
                                          "it may be truncated or damaged, export it again") from error


def _is_rotated(image: Image.Image) -> bool:
    return image.getexif().get(_ORIENTATION, 1) not in (None, 1)


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in _HIGH_BIT_MODES:
        return stretch(np.asarray(image, dtype=np.float32))
    if image.mode == "L":
        return np.asarray(image)  # uint8; decode_image keeps it and adds the float32 copy
    with_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    width, height = image.size

    def read_strip(top: int, bottom: int) -> np.ndarray:
        strip = image.crop((0, top, width, bottom))
        if with_alpha:
            strip = strip.convert("RGBA").convert("RGB")
        return np.asarray(strip.convert("RGB"), dtype=np.float32)

    return grey_from_strips(height, width, read_strip, np.float32)
