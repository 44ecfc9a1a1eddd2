"""Uploads built to amplify: small files that decode (or inflate) to gigabytes, and the DICOM wrappers.

Used by the decoder's unit tests (decoded in a child process whose RSS is
measured) and by the functional test against a real node.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

CT_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
# One 64 MiB run of zeros, deflated and fully flushed: the same bytes every time, so a
# multi-gigabyte stream is this block repeated (building it takes a fraction of a second).
_ZERO_BLOCK = 64 * 1024 * 1024


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_rgb_png_bomb(width: int = 7296, height: int = 5440) -> bytes:
    """An 8-bit RGB PNG of width x height grey pixels (39.7 megapixels by default, ~115 KB)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _meta_and_preamble(syntax: str) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def _explicit_element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _ct_header_elements(rows: int, columns: int, bits: int = 16) -> bytes:
    elements = [
        (0x0008, 0x0016, b"UI", CT_IMAGE_SOP_CLASS.encode() + b"\x00"),
        (0x0008, 0x0060, b"CS", b"CT"),
        (0x0028, 0x0002, b"US", struct.pack("<H", 1)),
        (0x0028, 0x0004, b"CS", b"MONOCHROME2 "),
        (0x0028, 0x0010, b"US", struct.pack("<H", rows)),
        (0x0028, 0x0011, b"US", struct.pack("<H", columns)),
        (0x0028, 0x0100, b"US", struct.pack("<H", bits)),
        (0x0028, 0x0101, b"US", struct.pack("<H", bits)),
        (0x0028, 0x0102, b"US", struct.pack("<H", bits - 1)),
        (0x0028, 0x0103, b"US", struct.pack("<H", 0)),
    ]
    return b"".join(_explicit_element(*item) for item in elements)


def make_deflated_dicom_bomb(inflated_bytes: int = 3 * 1024**3) -> bytes:
    """A Deflated Explicit VR Little Endian CT file (~3 MB) whose data set inflates to ``inflated_bytes``.

    The header declares a 512 x 512 slice; the pixel data element declares (and
    holds, once inflated) about 3 GB of zeros.
    """
    blocks = max(1, inflated_bytes // _ZERO_BLOCK)
    pixel_length = blocks * _ZERO_BLOCK
    head = _ct_header_elements(512, 512) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_length)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    zero_block = compressor.compress(bytes(_ZERO_BLOCK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_empty_stored_block = b"\x01\x00\x00\xff\xff"
    return (_meta_and_preamble("1.2.840.10008.1.2.1.99") + start + zero_block * blocks
            + final_empty_stored_block)


def _encapsulated_dicom(syntax: str, rows: int, columns: int, samples: int, bits: int, frame: bytes) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT_IMAGE_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = rows, columns, samples
    dataset.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = bits, bits, bits - 1
    dataset.PixelRepresentation = 0
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def make_jpeg_dicom(declared: int = 512, real: int = 13000) -> bytes:
    """A JPEG baseline CT file declaring declared x declared but holding a real x real JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (real, real), 100).save(buffer, format="JPEG", quality=75)
    return _encapsulated_dicom("1.2.840.10008.1.2.4.50", declared, declared, 1, 8, buffer.getvalue())


def make_rle_dicom_bomb(declared: int = 512, real: int = 6320, samples: int = 3, bits: int = 32) -> bytes:
    """An RLE CT file declaring declared x declared whose segments each decode to real x real bytes."""
    segments = samples * bits // 8
    segment = b"\x81\x00" * (real * real // 128)  # runs of 128 zero bytes
    offsets = [64 + index * len(segment) for index in range(segments)]
    header = struct.pack("<16I", segments, *offsets, *[0] * (15 - segments))
    return _encapsulated_dicom("1.2.840.10008.1.2.5", declared, declared, samples, bits,
                               header + segment * segments)


def make_rle_dicom(pixels: np.ndarray) -> bytes:
    """An honest 8-bit greyscale RLE CT file of ``pixels`` (uint8), made by pydicom's encoder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT_IMAGE_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = pixels.astype(np.uint8).tobytes()
    dataset.compress(RLELossless)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
