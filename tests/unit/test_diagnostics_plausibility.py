"""The cheap plausibility checks: they accept every real image and refuse plain mistakes.

Modality and "is it a chest image at all" are the learned gate's job since
issue 10 (tests/unit/test_diagnostics_gate.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diagnostics.imaging import ImageError, decode_image
from diagnostics.plausibility import validate_chest_image
from tests.unit.test_diagnostics_helpers import get_pydicom_file, list_data_images, read_data_image


def check_code(pixels: np.ndarray, modality: str) -> str:
    with pytest.raises(ImageError) as caught:
        validate_chest_image(pixels, modality)
    return caught.value.code


@pytest.mark.parametrize("modality", ["ct", "xray"])
def test_every_image_in_the_data_folder_passes_the_cheap_checks(shared_data_dir: Path, modality: str) -> None:
    paths = list_data_images(shared_data_dir, modality)
    assert len(paths) > 150
    refused = []
    for path in paths:
        try:
            validate_chest_image(decode_image(path.read_bytes(), modality).pixels, modality)
        except ImageError as error:
            refused.append((path.name, error.code))
    assert refused == []


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm"])
def test_real_dicom_ct_slices_pass_the_cheap_checks(name: str) -> None:
    validate_chest_image(decode_image(get_pydicom_file(name).read_bytes(), "ct").pixels, "ct")


def test_blank_images_are_refused() -> None:
    for value in (0, 128, 255):
        assert check_code(np.full((256, 256), value, np.float32), "xray") == "not-a-chest-image"


def test_image_with_few_grey_levels_is_refused(shared_data_dir: Path) -> None:
    pixels = decode_image(read_data_image(shared_data_dir, "xray"), "xray").pixels
    posterised = np.round(pixels / 255.0 * 7) * (255.0 / 7)  # 8 grey levels, same layout
    assert check_code(posterised.astype(np.float32), "xray") == "not-a-chest-image"


def test_strip_shaped_image_is_refused(shared_data_dir: Path) -> None:
    pixels = decode_image(read_data_image(shared_data_dir, "xray"), "xray").pixels
    assert check_code(pixels[100:164, :], "xray") == "not-a-chest-image"
