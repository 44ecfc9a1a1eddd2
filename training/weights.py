"""Where the ImageNet MobileNetV2 weights live and how to recognise them (no TensorFlow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from training.data import default_shared_dir

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
WEIGHTS_SHA256 = "d43c70f8ea04b1087170401b2f4739f41b94200e30892ea8d050ac65779146c6"


class WeightsError(RuntimeError):
    """The ImageNet weights are missing or wrong; we never fall back to random weights."""


def default_weights_path() -> Path:
    """``<shared>/weights/<file>``: ``$LUNGLEDGER_SHARED`` when set, else ``../shared`` from the repository root."""
    return default_shared_dir() / "weights" / WEIGHTS_FILE


def validate_weights(path: Path) -> None:
    """Raise WeightsError unless ``path`` is the expected ImageNet weights file."""
    if not Path(path).is_file():
        raise WeightsError(
            f"ImageNet weights not found at {path}. Pass --weights with the path of {WEIGHTS_FILE} "
            "(see ../shared/weights/README.md); training from random weights is not supported."
        )
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsError(f"{path} has SHA-256 {digest}, expected {WEIGHTS_SHA256} (MobileNetV2 alpha 0.35 no-top)")
