"""The configuration of one training run and its split data: shared by ``training.train`` and ``training.fit``.

Its own module so that ``fit`` (the TensorFlow half) and ``train`` (the
entry point) do not import each other.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from training.data import REPO_ROOT, LoadedData


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run (stored in the card)."""

    modality: str
    data_dir: str
    out_dir: str
    weights_path: str
    input_size: int = 224
    batch_size: int = 32
    epochs_stage1: int = 12
    epochs_stage2: int = 13
    learning_rate_stage1: float = 1e-4
    learning_rate_stage2: float = 1e-5
    unfrozen_layers: int = 30
    dropout: float = 0.2
    patience: int = 7
    validation_fraction: float = 0.2
    tuning_fraction: float = 0.2
    seed: int = 1337
    horizontal_flip: bool = False
    fill_mode: str = "constant"
    texture_augmentation: bool = False
    version: str = "1.0.0"


@dataclass(frozen=True)
class Splits:
    """Loaded data for the three sides, and their group ids."""

    train: LoadedData
    tuning: LoadedData
    validation: LoadedData
    groups: dict[str, list[str]]


def config_to_dict(config: TrainConfig) -> dict[str, object]:
    """The config as plain JSON values; paths relative to the repository root (portable cards)."""
    values = asdict(config)
    values.pop("out_dir")  # where this copy was written says nothing about the model
    for key in ("data_dir", "weights_path"):
        values[key] = os.path.relpath(str(values[key]), REPO_ROOT)
    return values
