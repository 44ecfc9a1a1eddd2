"""Model builder: never silently trains from random weights."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.training


def test_missing_weights_fail_with_a_clear_message(tmp_path: Path) -> None:
    from training.model import WeightsError, build_model

    with pytest.raises(WeightsError, match="--weights"):
        build_model(96, tmp_path / "absent.h5", 0.2)


def test_wrong_weights_file_is_refused(tmp_path: Path) -> None:
    from training.model import WeightsError, build_model

    impostor = tmp_path / "weights.h5"
    impostor.write_bytes(b"not the ImageNet weights")
    with pytest.raises(WeightsError, match="SHA-256"):
        build_model(96, impostor, 0.2)


def test_fine_tuning_unfreezes_only_the_last_layers_without_batchnorm() -> None:
    import keras

    from training.model import apply_fine_tuning, build_model, default_weights_path

    built = build_model(96, default_weights_path(), 0.2)
    assert not any(layer.trainable for layer in built.base.layers if layer.weights) or not built.base.trainable
    apply_fine_tuning(built.base, 30)
    trainable = [layer for layer in built.base.layers if layer.trainable and layer.weights]
    assert trainable and all(layer in built.base.layers[-30:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


@pytest.mark.parametrize("argument", ["--weights", "--data"])
def test_training_command_refuses_missing_inputs(tmp_path: Path, argument: str) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "training.train", "--modality", "ct", argument, str(tmp_path / "absent"),
               "--out", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "error:" in result.stderr and ("--weights" in result.stderr or "cancer/" in result.stderr)
    assert not (tmp_path / "out").exists()
