"""Train one modality end to end: ``python -m training.train --modality ct``.

Data handling (see docs/MODELS.md):
- ``validation`` (20 % of groups): held out; never seen by training, early
  stopping or the threshold. Its metrics are the ones reported.
- ``tuning`` (20 % of the remaining groups): monitored for early stopping and
  used to choose the decision threshold.
- ``train``: the rest, augmented.

Artefacts in ``--out``: model.tflite, model.keras, card.json, plots/*.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from training.data import (
    CLASS_NAMES,
    REPO_ROOT,
    DataError,
    LoadedData,
    default_data_dir,
    list_records,
    load_data,
    select,
)
from training.config import Splits, TrainConfig
from training.split import get_indices, split_groups
from training.weights import WeightsError, default_weights_path, validate_weights

DEFAULTS = {
    # CT slices: a tumour can sit in either lung, so a left-right mirror keeps the
    # label; X-rays: a mirrored chest (heart on the right, reversed side markers)
    # is anatomically wrong and would teach the model impossible images.
    # Texture (noise/blur) augmentation: on for CT, whose normal slices are
    # measurably grainier than the malignant ones (see training/augment.py).
    "ct": {"horizontal_flip": True, "fill_mode": "constant", "texture": True},
    "xray": {"horizontal_flip": False, "fill_mode": "constant", "texture": False},
}


def make_splits(data: LoadedData, config: TrainConfig) -> Splits:
    """Grouped split: validation held out first, then tuning carved from the rest."""
    groups = [record.group for record in data.records]
    outer = split_groups(groups, data.labels, config.validation_fraction, config.seed)
    development = select(data, get_indices(groups, outer.kept))
    development_groups = [record.group for record in development.records]
    inner = split_groups(development_groups, development.labels, config.tuning_fraction, config.seed + 1)
    return Splits(
        train=select(development, get_indices(development_groups, inner.kept)),
        tuning=select(development, get_indices(development_groups, inner.held_out)),
        validation=select(data, get_indices(groups, outer.held_out)),
        groups={"train": list(inner.kept), "tuning": list(inner.held_out), "validation": list(outer.held_out)},
    )


def describe(name: str, part: LoadedData) -> str:
    """One line: images per class and groups."""
    counts = np.bincount(part.labels, minlength=2)
    groups = len({record.group for record in part.records})
    return f"{name:>10}: {len(part.labels):4d} images ({counts[1]} cancer, {counts[0]} normal), {groups} groups"


def parse_args(argv: list[str] | None) -> TrainConfig:
    """Command line -> TrainConfig (modality-specific defaults for flip and fill)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=sorted(DEFAULTS), required=True)
    parser.add_argument("--data", help="folder with cancer/ and normal/ (default ../shared/data/<modality>)")
    parser.add_argument("--out", help="output folder (default models/<modality>)")
    parser.add_argument("--weights", help="MobileNetV2 alpha 0.35 ImageNet weights (.h5; default ../shared/weights/...)")
    parser.add_argument("--input-size", type=int, default=TrainConfig.input_size)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--epochs-stage1", type=int, default=TrainConfig.epochs_stage1)
    parser.add_argument("--epochs-stage2", type=int, default=TrainConfig.epochs_stage2)
    parser.add_argument("--learning-rate-stage1", type=float, default=TrainConfig.learning_rate_stage1)
    parser.add_argument("--learning-rate-stage2", type=float, default=TrainConfig.learning_rate_stage2)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--flip", choices=("on", "off", "default"), default="default",
                        help="horizontal flip augmentation (default: on for ct, off for xray)")
    parser.add_argument("--texture", choices=("on", "off", "default"), default="default",
                        help="noise/blur augmentation (default: on for ct, off for xray)")
    parser.add_argument("--version", default=TrainConfig.version)
    args = parser.parse_args(argv)
    defaults = DEFAULTS[args.modality]
    flip = defaults["horizontal_flip"] if args.flip == "default" else args.flip == "on"
    texture = defaults["texture"] if args.texture == "default" else args.texture == "on"
    return TrainConfig(
        modality=args.modality,
        data_dir=str(Path(args.data).resolve() if args.data else default_data_dir(args.modality)),
        out_dir=str(Path(args.out).resolve() if args.out else REPO_ROOT / "models" / args.modality),
        weights_path=str(Path(args.weights).resolve() if args.weights else default_weights_path()),
        input_size=args.input_size, batch_size=args.batch_size, epochs_stage1=args.epochs_stage1,
        epochs_stage2=args.epochs_stage2, learning_rate_stage1=args.learning_rate_stage1,
        learning_rate_stage2=args.learning_rate_stage2, patience=args.patience, seed=args.seed,
        horizontal_flip=bool(flip), fill_mode=str(defaults["fill_mode"]), texture_augmentation=bool(texture), version=args.version,
    )


def main(argv: list[str] | None = None) -> int:
    """Train, export, check, evaluate and write the artefacts of one modality."""
    config = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.fit import run_training  # TensorFlow is imported only from here on

    try:
        validate_weights(Path(config.weights_path))  # fail before minutes of loading, never train from random
        list_records(Path(config.data_dir))
    except (WeightsError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"loading {config.modality} images from {config.data_dir} at {config.input_size}px", flush=True)
    data = load_data(Path(config.data_dir), config.modality, config.input_size)
    splits = make_splits(data, config)
    for name in ("train", "tuning", "validation"):
        print(describe(name, getattr(splits, name)), flush=True)
    print(f"  classes: {CLASS_NAMES}; data digest {data.digest[:16]}", flush=True)
    card = run_training(config, splits, started)
    validation = card["metrics"]["validation"]
    print(
        f"done in {time.monotonic() - started:.0f}s: validation n={validation['n']} "
        f"accuracy={validation['accuracy']:.3f} auc={validation['auc']:.3f} "
        f"[{validation['auc_ci_low']:.3f}, {validation['auc_ci_high']:.3f}] -> {config.out_dir}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
