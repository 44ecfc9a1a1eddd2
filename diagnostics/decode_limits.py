"""Budgets that keep decoding an untrusted upload bounded in memory and time.

An upload is small; what it decodes to need not be (a 115 KB PNG can hold
40 megapixels of RGB, a 3 MB deflated DICOM inflates to 3 GB). So every decoder
estimates, from the header alone, the working memory its decode will need and
refuses the file when that passes :attr:`ImageLimits.max_decode_bytes`. Decodes
running at the same time share one process-wide :class:`DecodeBudget`, so the
number of decoding threads does not multiply the peak. A :class:`DecodeDeadline`
bounds one decode in time; it is checked between stages and while the parsers
read their input (a thread cannot be pre-empted, so the budgets above are what
bound a single C-level decode call).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from diagnostics.errors import DiagnosisError

MIB = 1024 * 1024
MAX_FILE_BYTES = 32 * MIB
MAX_PIXELS = 40_000_000
MIN_SIDE = 32
# Estimated peak working memory of one decode (decoder output, float32 copies).
MAX_DECODE_BYTES = 256 * MIB
# All decodes running at once in this process share this much.
MAX_CONCURRENT_DECODE_BYTES = 256 * MIB
# A deflated DICOM data set is inflated at most this far (pixel data included).
MAX_INFLATED_BYTES = 40 * MIB
DECODE_SECONDS = 5.0
# Working memory per pixel beyond the decoder's own output: the float32 image and
# one float32 temporary of windowing or stretching.
FLOAT_WORK_BYTES = 8


class ImageError(DiagnosisError):
    """An image was refused; ``code`` is a stable reason code."""


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits; the defaults are the module constants."""

    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE
    max_decode_bytes: int = MAX_DECODE_BYTES
    max_inflated_bytes: int = MAX_INFLATED_BYTES
    decode_seconds: float = DECODE_SECONDS


DEFAULT_LIMITS = ImageLimits()


class DecodeDeadline:
    """The time one decode may take; :meth:`check` raises ``decode-timeout`` once it has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, stage: str) -> None:
        if time.monotonic() > self.end:
            raise ImageError("decode-timeout", f"decoding the image took longer than {self.seconds:g} s "
                                               f"({stage}); export it smaller or uncompressed and upload it again")


class DeadlineReader(io.BytesIO):
    """An in-memory file that checks the deadline on every read (the parsers read block by block)."""

    def __init__(self, data: bytes, deadline: DecodeDeadline) -> None:
        super().__init__(data)
        self._deadline = deadline

    def read(self, size: int | None = -1) -> bytes:
        self._deadline.check("reading the file")
        return super().read(size)


class DecodeBudget:
    """A process-wide pool of decode memory: a decode reserves its estimate before it starts."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self._in_use = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextlib.contextmanager
    def reserve(self, cost: int, deadline: DecodeDeadline) -> Iterator[None]:
        """Hold ``cost`` bytes while decoding; wait (until the deadline) while others hold too much."""
        cost = min(max(cost, 0), self.total_bytes)
        with self._changed:
            while self._in_use + cost > self.total_bytes:
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise ImageError("decode-busy", "the node is decoding other large images right now; "
                                                    "retry in a few seconds")
                self._changed.wait(remaining)
            self._in_use += cost
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= cost
                self._changed.notify_all()


DECODE_BUDGET = DecodeBudget(MAX_CONCURRENT_DECODE_BYTES)


def check_pixel_count(width: int, height: int, limits: ImageLimits, frames: int = 1) -> None:
    """Refuse impossible sizes and more than ``limits.max_pixels`` pixels."""
    if width <= 0 or height <= 0 or frames <= 0:
        raise ImageError("corrupt-image", f"image header gives an impossible size {width}x{height}")
    if width * height * frames > limits.max_pixels:
        raise ImageError("too-many-pixels",
                         f"image is {width}x{height}; the limit is {limits.max_pixels} pixels")


def check_decode_bytes(cost: int, width: int, height: int, what: str, limits: ImageLimits) -> None:
    """Refuse a decode whose estimated working memory passes ``limits.max_decode_bytes``."""
    if cost > limits.max_decode_bytes:
        raise ImageError("too-many-pixels",
                         f"a {width}x{height} {what} image needs about {cost // MIB} MiB to decode; the limit "
                         f"is {limits.max_decode_bytes // MIB} MiB: export it at a lower resolution or in greyscale")
