"""Decode budgets and the decode deadline, and the strip-wise colour conversion they rely on.

Plan:
1. A decode that would run long (an RLE frame of millions of one-byte runs) is
   stopped at its deadline with ``decode-timeout``.
2. The process-wide budget: a decode waits while others hold the memory and is
   refused ``decode-busy`` when its deadline passes first; it runs once freed.
3. Estimates from the header: 39.7 MP of RGB is refused, a 4000 x 4000 grey
   radiograph is not.
4. Colour to grey strip by strip gives exactly the pixels of the whole-image
   conversion it replaced, for every colour mode, across strip boundaries.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from diagnostics.decode_limits import (
    DECODE_BUDGET,
    MAX_DECODE_BYTES,
    DecodeBudget,
    DecodeDeadline,
    ImageLimits,
)
from diagnostics.greyscale import STRIP_PIXELS, check_greyscale
from diagnostics.imaging import ImageError, decode_image, estimate_raster_bytes
from tests import bombs
from tests.conftest import DATA_DIR

REAL_CT = DATA_DIR / "dicom" / "ct_lpctdx_cancer_0.dcm"


def test_a_long_decode_is_stopped_at_its_deadline() -> None:
    side = 4000
    segment = b"\x00\x00" * (side * side // 2)  # literal runs of one byte: millions of runs to scan
    header = bombs.struct.pack("<16I", 1, 64, *[0] * 14)
    data = bombs._encapsulated_dicom("1.2.840.10008.1.2.5", side, side, 1, 8, header + segment)
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        decode_image(data, "ct", ImageLimits(decode_seconds=0.3))
    assert caught.value.code == "decode-timeout"
    assert time.monotonic() - started < 2.0


def test_the_budget_makes_a_decode_wait_then_refuses_it_at_the_deadline() -> None:
    budget = DecodeBudget(100)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with budget.reserve(80, DecodeDeadline(10)):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    with pytest.raises(ImageError) as caught, budget.reserve(50, DecodeDeadline(0.2)):
        pass
    assert caught.value.code == "decode-busy"
    release.set()
    thread.join(5)
    with budget.reserve(50, DecodeDeadline(1)):
        assert budget.in_use == 50
    assert budget.in_use == 0


def test_decode_image_is_refused_busy_while_the_shared_budget_is_spent() -> None:
    data = REAL_CT.read_bytes()
    with DECODE_BUDGET.reserve(DECODE_BUDGET.total_bytes, DecodeDeadline(10)):
        with pytest.raises(ImageError) as caught:
            decode_image(data, "ct", ImageLimits(decode_seconds=0.2))
        assert caught.value.code == "decode-busy"
    assert decode_image(data, "ct").pixels.shape == (512, 512)


def test_header_estimates() -> None:
    rgb = Image.open(io.BytesIO(bombs.make_rgb_png_bomb()))
    assert estimate_raster_bytes(rgb, rotated=True) > MAX_DECODE_BYTES
    grey = Image.new("L", (1, 1))
    grey._size = (4000, 4000)  # a header-only stand-in: estimates never touch pixels
    assert estimate_raster_bytes(grey, rotated=True) < MAX_DECODE_BYTES


def whole_image_grey(image: Image.Image) -> np.ndarray:
    """The conversion the decoder used before strips (commit a819a1a)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    check_greyscale(rgb)
    return rgb.mean(axis=2).astype(np.float32)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def greyish(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 1))
    return np.clip(base + rng.integers(-6, 7, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "P-transparent", "1", "CMYK-jpeg", "RGB-jpeg"])
def test_strip_conversion_equals_the_whole_image_conversion(mode: str) -> None:
    width, height = 1500, (2 * STRIP_PIXELS) // 1500 + 37  # three strips, the last one short
    image = Image.fromarray(greyish(width, height, seed=len(mode)))
    fmt = "JPEG" if mode.endswith("jpeg") else "PNG"
    if mode == "P-transparent":
        image = image.convert("P")
        image.info["transparency"] = 3
    elif mode not in ("RGB", "RGB-jpeg"):
        image = image.convert(mode.removesuffix("-jpeg"))
    data = encoded(image, fmt)
    with Image.open(io.BytesIO(data)) as reference:
        reference.load()
        try:
            expected = whole_image_grey(reference)
        except ImageError as error:  # palette and CMYK round trips come out coloured: the same refusal
            with pytest.raises(ImageError) as caught:
                decode_image(data, "xray")
            assert caught.value.message == error.message
            return
    np.testing.assert_array_equal(decode_image(data, "xray").pixels, expected)
