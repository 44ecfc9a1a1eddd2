"""DICOM uploads: read the file meta first, bound what is inflated and decoded, check every attribute used.

- The transfer syntax comes from the file meta, read before the data set. Only
  syntaxes whose frames this module can size are accepted: native (implicit or
  explicit VR, little or big endian), Deflated (inflated at most
  ``max_inflated_bytes``, never whole), JPEG baseline/extended, JPEG 2000 and RLE.
- The header's size (rows, columns, samples, bits, frames) sets a memory
  estimate that must fit the decode budget before any pixel is decoded; a
  compressed frame's own size (JPEG SOF, JPEG 2000 SIZ, RLE segments) must
  match the header, so a frame cannot decode to more than the header declared.
- Modality must be present and match; BodyPartExamined, when present, must name
  the chest (word match, negations refused); RescaleSlope/Intercept, window and
  LUT attributes must be single, finite and sensible. Anything else a parser or
  the windowing raises becomes a reason-coded :class:`ImageError`.
- CT: stored values -> Hounsfield units -> the lung window -> 0..255. X-ray: the
  file's modality LUT and VOI LUT/window, MONOCHROME1 and an INVERSE
  presentation LUT inverted so that air is dark, range mapped to 0..255.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnostics.decode_limits import (
    DECODE_BUDGET,
    FLOAT_WORK_BYTES,
    MIB,
    DeadlineReader,
    DecodeDeadline,
    ImageError,
    ImageLimits,
    check_decode_bytes,
    check_pixel_count,
)
from diagnostics.dicom_frames import (
    jpeg2000_frame_size,
    jpeg_frame_size,
    validate_rle_frame,
)
from diagnostics.errors import DiagnosisError
from diagnostics.greyscale import grey_from_strips, stretch

LUNG_WINDOW_LEVEL = -600.0
LUNG_WINDOW_WIDTH = 1500.0
DICOM_MODALITIES = {"ct": frozenset({"CT"}), "xray": frozenset({"CR", "DX", "RG", "DR"})}
CHEST_WORDS = frozenset({"CHEST", "THORAX", "THORACIC", "LUNG", "LUNGS", "TORSO", "TRUNK", "WHOLEBODY",
                         "CHESTABDOMEN", "CHESTABDPELVIS", "CHESTTOPELVIS"})
NEGATION_WORDS = frozenset({"NOT", "NO", "NON", "EXCEPT", "EXCLUDING", "WITHOUT"})
PHOTOMETRIC = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
PRESENTATION_SHAPES = frozenset({"IDENTITY", "INVERSE"})
BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
INFLATE_STEP = 1 * MIB

NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
JPEG_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
JPEG2000_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
RLE_SYNTAX = "1.2.840.10008.1.2.5"
ACCEPTED_SYNTAXES = NATIVE_SYNTAXES | JPEG_SYNTAXES | JPEG2000_SYNTAXES | {DEFLATED_SYNTAX, RLE_SYNTAX}


@dataclass(frozen=True)
class DicomImageHeader:
    """What the header says the pixel data holds, checked."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    syntax: str

    @property
    def sample_bytes(self) -> int:
        return max(1, self.bits_allocated // 8)

    @property
    def pixels(self) -> int:
        return self.rows * self.columns


def decode_dicom(data: bytes, modality: str, limits: ImageLimits, deadline: DecodeDeadline,
                 parser_errors: tuple[type[BaseException], ...]) -> np.ndarray:
    """Decode a DICOM upload to greyscale float32 0..255; every refusal is an ImageError."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = read_dicom(data, limits, deadline)
            header = validate_dicom_header(dataset, modality, limits)
            with DECODE_BUDGET.reserve(estimate_dicom_bytes(header, modality), deadline):
                validate_pixel_data(dataset, header, deadline)
                stored = dataset.pixel_array
                deadline.check("decoding the pixel data")
                stored = to_single_grey_frame(stored)
                return window_dicom(dataset, stored, modality, parser_errors)
    except DiagnosisError:
        raise
    except (*parser_errors, pydicom.errors.InvalidDicomError,  # type: ignore[misc]
            pydicom.errors.BytesLengthException) as error:
        raise ImageError("corrupt-image", f"the DICOM file could not be decoded ({error}); "
                                          "it may be truncated or damaged, export it again") from error


# ------------------------------------------------------------------ reading
def read_dicom(data: bytes, limits: ImageLimits, deadline: DecodeDeadline) -> Any:
    """File meta first; then the data set, inflated within ``limits.max_inflated_bytes`` when deflated."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset
    from pydicom.uid import ExplicitVRLittleEndian

    stream = DeadlineReader(data, deadline)
    stream.seek(132)  # the 128-byte preamble and "DICM" (checked by sniff_format)
    file_meta = _read_file_meta_info(stream)
    syntax = str(getattr(file_meta, "TransferSyntaxUID", "") or "")
    validate_transfer_syntax(syntax)
    if syntax != DEFLATED_SYNTAX:
        return pydicom.dcmread(DeadlineReader(data, deadline))
    body = inflate_bounded(memoryview(data)[stream.tell():], limits.max_inflated_bytes, deadline)
    dataset = read_dataset(DeadlineReader(body, deadline), is_implicit_VR=False, is_little_endian=True)
    # The inflated data set is Explicit VR Little Endian; its pixel data is native.
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = file_meta
    return dataset


def validate_transfer_syntax(syntax: str) -> None:
    """Refuse transfer syntaxes whose frames cannot be sized before decoding (or decoded here)."""
    if syntax not in ACCEPTED_SYNTAXES:
        raise ImageError("unsupported-format", f"DICOM transfer syntax {syntax or '(none)'} cannot be decoded "
                                               "here; export the image uncompressed, as JPEG, JPEG 2000 or "
                                               "RLE, or as PNG")


def inflate_bounded(compressed: memoryview, limit: int, deadline: DecodeDeadline) -> bytes:
    """Inflate a raw deflate stream step by step; refuse it as soon as it passes ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    output = bytearray()
    pending: bytes | memoryview = compressed
    while pending and not inflater.eof:
        output += inflater.decompress(pending, INFLATE_STEP)
        if len(output) > limit:
            raise ImageError("too-many-pixels", f"the deflated DICOM data set inflates to more than "
                                                f"{limit // MIB} MiB; export it uncompressed or smaller")
        pending = inflater.unconsumed_tail
        deadline.check("inflating the deflated data set")
    if not inflater.eof:
        raise ImageError("corrupt-image", "the deflated DICOM data set is truncated; export it again")
    return bytes(output)


# ------------------------------------------------------------------ header
def validate_dicom_header(dataset: Any, modality: str, limits: ImageLimits) -> DicomImageHeader:
    """Check a DICOM header before its pixels are decoded: image present, size within the limits,
    one frame, modality and body part as declared, attributes used by windowing well formed."""
    if "PixelData" not in dataset:
        if "Rows" in dataset:
            raise ImageError("corrupt-image", "the DICOM file describes an image but holds no pixel data; "
                                              "it may be truncated, export it again")
        raise ImageError("unsupported-format", "the DICOM file holds no image (no PixelData)")
    header = read_image_header(dataset)
    frames = read_int(dataset, "NumberOfFrames", 1) or 0  # never None: it has a default
    check_pixel_count(header.columns, header.rows, limits, frames)
    if frames != 1:
        raise ImageError("unsupported-format", f"the DICOM file has {frames} frames; upload one slice or radiograph")
    check_decode_bytes(estimate_dicom_bytes(header, modality), header.columns, header.rows, "DICOM", limits)
    validate_modality_and_body_part(dataset, modality)
    validate_rescale(dataset)
    if modality == "xray":
        validate_voi(dataset)
    return header


def read_image_header(dataset: Any) -> DicomImageHeader:
    rows, columns = read_int(dataset, "Rows", None), read_int(dataset, "Columns", None)
    samples = read_int(dataset, "SamplesPerPixel", 1)
    bits_allocated = read_int(dataset, "BitsAllocated", None)
    bits_stored = read_int(dataset, "BitsStored", bits_allocated)
    representation = read_int(dataset, "PixelRepresentation", 0)
    if rows is None or columns is None or bits_allocated is None:
        raise bad_header("Rows, Columns and BitsAllocated are required")
    if samples not in (1, 3):
        raise bad_header(f"SamplesPerPixel is {samples}; 1 (grey) or 3 (colour) expected")
    if bits_allocated not in BITS_ALLOCATED or bits_stored is None or not 1 <= bits_stored <= bits_allocated:
        raise bad_header(f"BitsAllocated {bits_allocated} / BitsStored {bits_stored} are not a valid pair")
    if representation not in (0, 1):
        raise bad_header(f"PixelRepresentation is {representation}; 0 or 1 expected")
    interpretation = read_text(dataset, "PhotometricInterpretation")
    if interpretation == "PALETTE COLOR":
        raise ImageError("not-greyscale", "the DICOM image is a palette colour image, not a greyscale radiograph")
    if interpretation not in PHOTOMETRIC:
        raise bad_header(f"PhotometricInterpretation {interpretation or '(missing)'} is not one of "
                         f"{sorted(PHOTOMETRIC)}")
    syntax = str(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "") or "")
    return DicomImageHeader(rows, columns, samples, bits_allocated, syntax)


def estimate_dicom_bytes(header: DicomImageHeader, modality: str) -> int:
    """Working memory of decoding and windowing this image (bytes), from the header alone."""
    per_pixel = header.samples * header.sample_bytes + FLOAT_WORK_BYTES
    if header.syntax not in NATIVE_SYNTAXES and header.syntax != DEFLATED_SYNTAX:
        per_pixel += header.samples * 4  # the codec's own image before pydicom's array
    if header.samples == 3:
        per_pixel += 8  # float64 mean of the channels
    if modality == "xray":
        per_pixel += 16  # pydicom's float64 modality and VOI LUT outputs
    return header.pixels * per_pixel


def validate_modality_and_body_part(dataset: Any, modality: str) -> None:
    file_modality = read_text(dataset, "Modality")
    allowed = "/".join(sorted(DICOM_MODALITIES[modality]))
    if not file_modality:
        raise ImageError("wrong-modality", f"the DICOM file does not say its modality (0008,0060); "
                                           f"'{modality}' needs {allowed}")
    if file_modality not in DICOM_MODALITIES[modality]:
        raise ImageError("wrong-modality", f"the DICOM file's modality is {file_modality}, "
                                           f"not {allowed} as '{modality}' requires")
    body_part = read_text(dataset, "BodyPartExamined")
    words = set(re.findall(r"[A-Z]+", body_part))
    if body_part and (not words & CHEST_WORDS or words & NEGATION_WORDS):
        raise ImageError("not-a-chest-image", f"the DICOM file says the body part is {body_part}, not the chest")


def validate_rescale(dataset: Any) -> None:
    slope = read_number(dataset, "RescaleSlope", 1.0)
    read_number(dataset, "RescaleIntercept", 0.0)
    if slope == 0.0:
        raise bad_header("RescaleSlope is 0: every pixel would have the same value")


def validate_voi(dataset: Any) -> None:
    """The window, VOI LUT function and presentation LUT shape pydicom and window_xray will read."""
    centres, widths = read_numbers(dataset, "WindowCenter"), read_numbers(dataset, "WindowWidth")
    if len(centres) != len(widths):
        raise bad_header(f"WindowCenter has {len(centres)} values but WindowWidth has {len(widths)}")
    function = read_text(dataset, "VOILUTFunction") or "LINEAR"
    if function not in VOI_FUNCTIONS:
        raise bad_header(f"VOILUTFunction {function} is not one of {sorted(VOI_FUNCTIONS)}")
    smallest = 1.0 if function == "LINEAR" else 0.0
    if any(width < smallest or (width == 0.0) for width in widths):
        raise bad_header(f"WindowWidth {widths} must be {'at least 1' if smallest else 'above 0'}")
    shape = read_text(dataset, "PresentationLUTShape")
    if shape and shape not in PRESENTATION_SHAPES:
        raise bad_header(f"PresentationLUTShape {shape} is not one of {sorted(PRESENTATION_SHAPES)}")


def bad_header(message: str) -> ImageError:
    return ImageError("bad-dicom-header", f"the DICOM header is malformed: {message}; export the image again")


def read_value(dataset: Any, keyword: str) -> Any:
    if keyword not in dataset:
        return None
    value = dataset[keyword].value
    return None if value is None or value == "" or value == b"" else value


def read_int(dataset: Any, keyword: str, default: int | None) -> int | None:
    value = read_value(dataset, keyword)
    if value is None:
        return default
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise bad_header(f"{keyword} must have one value, not {len(value)}")
    if isinstance(value, bytes) or (isinstance(value, float) and not value.is_integer()):
        raise bad_header(f"{keyword} must be a whole number, got {value!r}")
    try:
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise bad_header(f"{keyword} must be a whole number, got {value!r}") from None


def read_numbers(dataset: Any, keyword: str) -> list[float]:
    value = read_value(dataset, keyword)
    if value is None:
        return []
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    numbers = []
    for item in values:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise bad_header(f"{keyword} must be a number, got {item!r}") from None
        if not math.isfinite(number):
            raise bad_header(f"{keyword} must be finite, got {item!r}")
        numbers.append(number)
    return numbers


def read_number(dataset: Any, keyword: str, default: float) -> float:
    numbers = read_numbers(dataset, keyword)
    if len(numbers) > 1:
        raise bad_header(f"{keyword} must have one value, not {len(numbers)}")
    return numbers[0] if numbers else default


def read_text(dataset: Any, keyword: str) -> str:
    value = read_value(dataset, keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise bad_header(f"{keyword} must have one value, not {len(value)}")
    return str(value).strip().upper()


# ------------------------------------------------------------------ pixel data
def validate_pixel_data(dataset: Any, header: DicomImageHeader, deadline: DecodeDeadline) -> None:
    """A compressed frame must be exactly the size the header declares (before it is decoded)."""
    if header.syntax in NATIVE_SYNTAXES or header.syntax == DEFLATED_SYNTAX:
        return  # native pixel data is a view of bytes already in memory
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(dataset.PixelData, number_of_frames=1), b"")
    deadline.check("reading the compressed frame")
    if header.syntax in JPEG_SYNTAXES:
        width, height, samples = jpeg_frame_size(frame)
    elif header.syntax in JPEG2000_SYNTAXES:
        width, height, samples = jpeg2000_frame_size(frame)
    else:
        validate_rle_frame(frame, header, deadline)
        return
    if (width, height, samples) != (header.columns, header.rows, header.samples):
        raise ImageError("corrupt-image", f"the compressed frame is {width}x{height} with {samples} samples but "
                                          f"the DICOM header says {header.columns}x{header.rows} with "
                                          f"{header.samples}; the file is damaged or forged")


def to_single_grey_frame(stored: np.ndarray) -> np.ndarray:
    if stored.ndim == 3 and stored.shape[2] == 3:
        height, width = stored.shape[:2]
        return grey_from_strips(height, width, lambda top, bottom: stored[top:bottom], np.float64)
    if stored.ndim != 2:
        raise ImageError("unsupported-format", f"DICOM pixel data has shape {stored.shape}; "
                                               "one greyscale frame is required")
    return stored


# ------------------------------------------------------------------ windowing
def window_dicom(dataset: Any, stored: np.ndarray, modality: str,
                 parser_errors: tuple[type[BaseException], ...]) -> np.ndarray:
    try:
        pixels = window_ct(dataset, stored) if modality == "ct" else window_xray(dataset, stored)
    except DiagnosisError:
        raise
    except parser_errors as error:
        raise bad_header(f"its windowing attributes cannot be applied ({error})") from error
    return pixels


def window_ct(dataset: Any, stored: np.ndarray) -> np.ndarray:
    """Stored values -> Hounsfield units -> lung window -> 0..255."""
    slope = read_number(dataset, "RescaleSlope", 1.0)
    intercept = read_number(dataset, "RescaleIntercept", 0.0)
    hounsfield = stored.astype(np.float32)
    hounsfield *= slope
    hounsfield += intercept
    return apply_window(hounsfield, LUNG_WINDOW_LEVEL, LUNG_WINDOW_WIDTH, in_place=True)


def apply_window(values: np.ndarray, level: float, width: float, in_place: bool = False) -> np.ndarray:
    """Linear window: level - width/2 -> 0, level + width/2 -> 255, clipped."""
    low = level - width / 2.0
    scaled = values if in_place and values.dtype == np.float32 else values.astype(np.float32)
    scaled -= low
    scaled *= 255.0 / width
    return np.clip(scaled, 0.0, 255.0, out=scaled)


def window_xray(dataset: Any, stored: np.ndarray) -> np.ndarray:
    """Apply the file's modality and VOI LUT or window, honour MONOCHROME1, map to 0..255."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    values = apply_voi_lut(apply_modality_lut(stored, dataset), dataset).astype(np.float32)
    scaled = stretch(values)
    inverted = read_text(dataset, "PhotometricInterpretation") == "MONOCHROME1"
    if read_text(dataset, "PresentationLUTShape") == "INVERSE":
        inverted = not inverted
    if inverted:
        scaled = 255.0 - scaled
    return scaled.astype(np.float32)

