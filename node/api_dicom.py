"""``POST /api/v1/dicom/tags``: the DICOM header fields a reader checks before trusting an image.

The page sends a chosen file here (signed-in users only) to show modality,
body part, series, slice thickness, window and size before and after the
diagnosis. Nothing is stored. Patient identifiers are never returned: only
the fields in ``TAGS``. Parsed with pydicom without pixel data, on a worker
thread, with the upload's size limit.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pydicom
from aiohttp import web
from pydicom.errors import InvalidDicomError

from node.auth import read_limited

MAX_DICOM_BYTES = 20 * 1024 * 1024
TAGS = ("Modality", "BodyPartExamined", "SeriesDescription", "SeriesNumber", "SliceThickness", "WindowCenter",
        "WindowWidth", "Rows", "Columns", "PixelSpacing", "KVP", "ConvolutionKernel", "PhotometricInterpretation")


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def plain(value: Any) -> Any:
    """DICOM values as JSON: numbers stay numbers, multi-values become lists."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [plain(item) for item in value]
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


def read_tags(data: bytes) -> dict[str, Any]:
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {name: plain(dataset.get(name)) for name in TAGS if dataset.get(name) not in (None, "")}


async def post_dicom_tags(request: web.Request) -> web.Response:
    raw = await read_limited(request, MAX_DICOM_BYTES)
    if raw is None:
        return error(413, "file-too-large", f"a DICOM file is at most {MAX_DICOM_BYTES} bytes here")
    if len(raw) < 132 or raw[128:132] != b"DICM":
        return error(415, "not-dicom", "this file is not DICOM Part 10 (no 'DICM' marker at byte 128)")
    try:
        tags = await asyncio.to_thread(read_tags, raw)
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, AttributeError, KeyError) as failure:
        return error(422, "bad-dicom", f"the DICOM header cannot be read: {failure}")
    return web.json_response({"tags": tags})


def setup_dicom(app: web.Application) -> None:
    app.router.add_post("/api/v1/dicom/tags", post_dicom_tags)
