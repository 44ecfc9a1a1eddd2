"""Grouped k-fold cross-validation of the training recipe (a steadier estimate for small sets).

    python -m training.crossval --modality xray --folds 5 --report cv.json [train options]

Each fold is held out once; the rest is split into train and tuning exactly as
``training.train`` does (tuning for early stopping and the fold's threshold).
Out-of-fold probabilities of all images are pooled into one set of metrics.
Nothing is exported: this measures the recipe, not a shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from training.card import replace_nan
from training.data import LoadedData, load_data, select
from training.metrics import choose_threshold, summarise
from training.split import assign_folds, get_indices, split_groups
from training.config import Splits, TrainConfig
from training.train import parse_args


def make_fold_splits(data: LoadedData, config: TrainConfig, assignment: dict[str, int], fold: int) -> Splits:
    """Fold ``fold`` held out; tuning carved from the rest by groups."""
    groups = [record.group for record in data.records]
    held = [group for group, value in assignment.items() if value == fold]
    rest = select(data, np.array([i for i, g in enumerate(groups) if assignment[g] != fold], dtype=np.int64))
    rest_groups = [record.group for record in rest.records]
    inner = split_groups(rest_groups, rest.labels, config.tuning_fraction, config.seed + 1)
    return Splits(train=select(rest, get_indices(rest_groups, inner.kept)),
                  tuning=select(rest, get_indices(rest_groups, inner.held_out)),
                  validation=select(data, get_indices(groups, held)),
                  groups={"train": list(inner.kept), "tuning": list(inner.held_out), "validation": held})


def pool(labels: np.ndarray, scores: np.ndarray, called: np.ndarray) -> dict[str, float | int]:
    """Accuracy etc. of each fold's own calls (threshold per fold), AUC of the pooled probabilities."""
    calls = {key: value for key, value in summarise(labels, called.astype(float), 0.5).items() if not key.startswith("auc")}
    ranking = summarise(labels, scores, 0.5)
    return calls | {key: ranking[key] for key in ("auc", "auc_ci_low", "auc_ci_high")}


def main(argv: list[str] | None = None) -> int:
    """Train every fold, pool the out-of-fold predictions, print and save the metrics."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--folds", type=int, default=5)
    extra.add_argument("--report", type=Path, default=Path("crossval.json"))
    options, argv = extra.parse_known_args(argv)
    folds, report = options.folds, options.report
    config = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training.fit import train_two_stages
    from training.model import build_model

    started = time.monotonic()
    data = load_data(Path(config.data_dir), config.modality, config.input_size)
    assignment = assign_folds([r.group for r in data.records], data.labels, folds, config.seed)
    scores = np.full(len(data.labels), np.nan)
    called = np.zeros(len(data.labels), dtype=bool)
    index_of = {record.file: i for i, record in enumerate(data.records)}
    for fold in range(folds):
        splits = make_fold_splits(data, config, assignment, fold)
        print(f"fold {fold + 1}/{folds}: train {len(splits.train.labels)}, tuning {len(splits.tuning.labels)}, "
              f"held out {len(splits.validation.labels)}", flush=True)
        keras.utils.set_random_seed(config.seed + fold)
        model = build_model(config.input_size, Path(config.weights_path), config.dropout)
        train_two_stages(model, config, splits)
        threshold = choose_threshold(splits.tuning.labels, model.classifier.predict(splits.tuning.images, verbose=0)[:, 0])
        held_scores = model.classifier.predict(splits.validation.images, verbose=0)[:, 0]
        positions = [index_of[r.file] for r in splits.validation.records]
        scores[positions] = held_scores
        called[positions] = held_scores >= threshold
        keras.backend.clear_session()
    result: dict[str, object] = {"folds": folds, "seconds": round(time.monotonic() - started, 1),
                                 "all": pool(data.labels, scores, called)}
    if any(r.other_findings is not None for r in data.records):
        subset = np.array([r.label == 0 or r.other_findings == 0 for r in data.records])
        result["no_other_findings"] = pool(data.labels[subset], scores[subset], called[subset])
    report.write_text(json.dumps(replace_nan(result), indent=2) + "\n")
    print(json.dumps(replace_nan(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
