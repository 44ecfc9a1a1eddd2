"""Malformed DICOM attributes are reason-coded refusals, never another exception (issue 12, item 6).

Plan:
1. The eleven malformed headers of the report (multi-valued or non-numeric
   RescaleSlope/RescaleIntercept, WindowWidth 0 or negative, a bad
   VOILUTFunction, malformed LUT sequences) and the three that passed (no
   Modality, BodyPartExamined "NOT CHEST", RescaleSlope 0): each an ImageError
   with its code (before: a 500 or accepted).
2. Property: any value (raw bytes of any length, typical malformed strings, or
   absence) in any attribute the decoder reads gives a float32 image in 0..255
   or an ImageError; nothing else escapes.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from diagnostics.imaging import ImageError, decode_image

READ_ATTRIBUTES = [
    "Modality", "BodyPartExamined", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "PhotometricInterpretation", "NumberOfFrames", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction", "PresentationLUTShape",
    "PlanarConfiguration", "PixelData",
]
LUT_SEQUENCES = ["ModalityLUTSequence", "VOILUTSequence"]
MALFORMED_TEXT = ["", " ", "0", "-5", "1\\2", "abc", "nan", "inf", "-inf", "1e400", "65536", "-1", "1.5",
                  "NOT CHEST", "CT", "DX", "MONOCHROME1", "PALETTE COLOR", "SIGMOID", "INVERSE", "\x00\x00"]


def base_dataset(modality: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT" if modality == "ct" else "DX"
    dataset.BodyPartExamined = "CHEST"
    dataset.Rows, dataset.Columns = 48, 40
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = (np.arange(48 * 40, dtype=np.uint16) % 4096).tobytes()
    return dataset


def encode(dataset: Any) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def lut_item(descriptor: Any, data: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = descriptor
    item.add_new(0x00283006, "US", data)
    item.ModalityLUTType = "HU"
    return item


def set_attribute(dataset: Any, keyword: str, value: Any) -> None:
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    if value is None:
        if keyword in dataset:
            del dataset[keyword]
        return
    raw = value.encode("latin-1") + b" " * (len(value) % 2) if isinstance(value, str) else value
    raw += b"\x00" * (len(raw) % 2)
    # Written as UN, read back as the dictionary VR, however malformed.
    dataset[tag] = RawDataElement(tag, "UN", len(raw), raw, 0, False, True)


def refusal(data: bytes, modality: str) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(data, modality)
    assert caught.value.message
    return caught.value.code


@pytest.mark.parametrize(("modality", "keyword", "value", "code"), [
    ("ct", "RescaleSlope", "1\\2", "bad-dicom-header"),
    ("ct", "RescaleSlope", "abc", "corrupt-image"),
    ("ct", "RescaleIntercept", "-1024\\0", "bad-dicom-header"),
    ("ct", "RescaleIntercept", "zz", "corrupt-image"),
    ("xray", "RescaleSlope", "1\\2", "bad-dicom-header"),
    ("xray", "WindowWidth", "0", "bad-dicom-header"),
    ("xray", "WindowWidth", "-100", "bad-dicom-header"),
    ("xray", "WindowWidth", "inf", "bad-dicom-header"),
    ("xray", "VOILUTFunction", "CUBIC", "bad-dicom-header"),
    ("ct", "Modality", None, "wrong-modality"),
    ("xray", "Modality", None, "wrong-modality"),
    ("ct", "BodyPartExamined", "NOT CHEST", "not-a-chest-image"),
    ("ct", "BodyPartExamined", "ABDOMEN", "not-a-chest-image"),
    ("ct", "RescaleSlope", "0", "bad-dicom-header"),
])
def test_reported_malformed_headers_are_refused_with_a_code(modality: str, keyword: str, value: Any,
                                                            code: str) -> None:
    dataset = base_dataset(modality)
    set_attribute(dataset, keyword, value)
    got = refusal(encode(dataset), modality)
    assert got == code or (code == "corrupt-image" and got == "bad-dicom-header")


@pytest.mark.parametrize("sequence", LUT_SEQUENCES)
@pytest.mark.parametrize(("descriptor", "data"), [
    ([4096, 0, 16], [1, 2, 3]),          # fewer entries than the descriptor says
    ([0, 0, 16], []),                    # 65536 entries, none given
    ([16, 0, 99], list(range(16))),      # impossible bit depth
    ([4096, 0], list(range(4096))),      # descriptor with two values
])
def test_malformed_lut_sequences_are_refused(sequence: str, descriptor: list[int], data: list[int]) -> None:
    from pydicom.sequence import Sequence

    dataset = base_dataset("xray")
    setattr(dataset, sequence, Sequence([lut_item(descriptor, data)]))
    try:
        decoded = decode_image(encode(dataset), "xray")
    except ImageError:
        return
    assert np.isfinite(decoded.pixels).all()  # pydicom tolerated it: still a valid picture


def test_chest_body_parts_in_practice_are_accepted() -> None:
    for body_part in ("CHEST", "Chest PA", "THORAX", "LUNG", "CHEST_TO_PELVIS", "WHOLEBODY"):
        dataset = base_dataset("ct")
        dataset.BodyPartExamined = body_part
        assert decode_image(encode(dataset), "ct").pixels.shape == (48, 40)


VALUES = st.one_of(st.none(), st.binary(max_size=24), st.sampled_from(MALFORMED_TEXT))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modality=st.sampled_from(["ct", "xray"]),
       changes=st.dictionaries(st.sampled_from(READ_ATTRIBUTES), VALUES, min_size=1, max_size=4),
       lut=st.one_of(st.none(), st.tuples(st.sampled_from(LUT_SEQUENCES),
                                          st.lists(st.integers(0, 65535), max_size=4),
                                          st.lists(st.integers(0, 65535), max_size=20))))
def test_any_attribute_value_is_an_image_or_an_image_error(modality: str, changes: dict[str, Any],
                                                           lut: Any) -> None:
    from pydicom.sequence import Sequence

    dataset = base_dataset(modality)
    for keyword, value in changes.items():
        set_attribute(dataset, keyword, value)
    if lut is not None:
        sequence, descriptor, data = lut
        setattr(dataset, sequence, Sequence([lut_item(descriptor, data)]))
    try:
        data_bytes = encode(dataset)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, OSError, struct.error):
        event("pydicom cannot write it")
        return
    try:
        decoded = decode_image(data_bytes, modality)
    except ImageError as error:
        event(f"refused: {error.code}")
        return
    event("decoded")
    assert decoded.pixels.dtype == np.float32
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 255.0
