"""The real size of a compressed DICOM frame, read from its own header without decoding it.

A DICOM header may declare 512 x 512 while its JPEG frame is 13000 x 13000 or
its RLE segments unpack to gigabytes; the decoders trust the frame, so the
frame's size is read here and compared with the header first.
"""

from __future__ import annotations

import itertools
import struct
from typing import Protocol

from diagnostics.decode_limits import DecodeDeadline, ImageError

# JPEG start-of-frame markers (SOF0-SOF15 less DHT, JPG and DAC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
RLE_CHECK_EVERY = 1 << 16


class FrameHeader(Protocol):
    """What the DICOM header declares (``diagnostics.dicom.DicomImageHeader``)."""

    @property
    def rows(self) -> int: ...
    @property
    def columns(self) -> int: ...
    @property
    def samples(self) -> int: ...
    @property
    def sample_bytes(self) -> int: ...
    @property
    def pixels(self) -> int: ...


def jpeg_frame_size(frame: bytes) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG stream's start-of-frame header."""
    if not frame.startswith(b"\xff\xd8"):
        raise ImageError("corrupt-image", "the DICOM JPEG frame does not start with a JPEG marker")
    position = 2
    while position + 4 <= len(frame):
        if frame[position] != 0xFF:
            break
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
        elif marker in JPEG_SOF_MARKERS and position + 10 <= len(frame):
            height, width = struct.unpack(">HH", frame[position + 5:position + 9])
            return width, height, frame[position + 9]
        elif marker in (0xDA, 0xD9):
            break
        else:
            position += 2 + struct.unpack(">H", frame[position + 2:position + 4])[0]
    raise ImageError("corrupt-image", "the DICOM JPEG frame has no frame header before its image data")


def jpeg2000_frame_size(frame: bytes) -> tuple[int, int, int]:
    """(width, height, components) from the SIZ marker of a JPEG 2000 codestream (bare or in a JP2 file)."""
    codestream = frame
    if frame.startswith(JP2_SIGNATURE):
        codestream = _jp2_codestream(frame)
    if not codestream.startswith(b"\xff\x4f\xff\x51") or len(codestream) < 4 + 38:
        raise ImageError("corrupt-image", "the DICOM JPEG 2000 frame has no SIZ header")
    fields = struct.unpack(">HHIIIIIIIIH", codestream[4:42])
    x_size, y_size, x_offset, y_offset, components = fields[2], fields[3], fields[4], fields[5], fields[10]
    return x_size - x_offset, y_size - y_offset, components


def _jp2_codestream(data: bytes) -> bytes:
    position = 0
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        start = position + 8
        if length == 1 and position + 16 <= len(data):
            length, start = struct.unpack(">Q", data[position + 8:position + 16])[0], position + 16
        elif length == 0:
            length = len(data) - position
        if kind == b"jp2c":
            return data[start:position + length]
        if length < start - position:
            break
        position += length
    raise ImageError("corrupt-image", "the DICOM JPEG 2000 file holds no codestream box")


def validate_rle_frame(frame: bytes, header: FrameHeader, deadline: DecodeDeadline) -> None:
    """RLE: one segment per sample byte, each decoding to exactly rows x columns bytes."""
    if len(frame) < 64:
        raise ImageError("corrupt-image", "the DICOM RLE frame is shorter than its 64-byte header")
    count, *offsets = struct.unpack("<16I", frame[:64])
    expected = header.samples * header.sample_bytes
    if count != expected:
        raise ImageError("corrupt-image", f"the DICOM RLE frame holds {count} segments; "
                                          f"{expected} expected for its samples and bits")
    bounds = [*offsets[:count], len(frame)]
    if bounds[0] != 64 or any(a > b for a, b in itertools.pairwise(bounds)):
        raise ImageError("corrupt-image", "the DICOM RLE frame's segment offsets are out of order")
    for start, end in itertools.pairwise(bounds):
        if rle_decoded_length(frame[start:end], header.pixels, deadline) > header.pixels:
            raise ImageError("corrupt-image", f"a DICOM RLE segment decodes to more than the "
                                              f"{header.columns}x{header.rows} the header declares")


def rle_decoded_length(segment: bytes, limit: int, deadline: DecodeDeadline) -> int:
    """Bytes a PackBits segment decodes to, counted without decoding; stops once past ``limit``."""
    total = position = steps = 0
    size = len(segment)
    while position < size:
        control = segment[position]
        if control > 128:
            total += 257 - control
            position += 2
        else:
            if control < 128:
                total += control + 1
                position += control + 1
            position += 1
        if total > limit:
            return total
        steps += 1
        if steps % RLE_CHECK_EVERY == 0:
            deadline.check("checking the RLE frame")
    return total
