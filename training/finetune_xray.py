"""X-ray experiment: does fine-tuning the whole backbone move the per-source and cross-source figures?

``python -m training.finetune_xray --variant 2 --runs A,B,C --report finetune.jsonl``

The shipped X-ray model is a frozen ImageNet MobileNetV2 (alpha 0.35) with an L2
logistic head (``training.train_head``). This measures what training the
backbone itself on the 359 radiographs does, with the recipe fixed before the
runs (docs/MODELS.md, "X-ray, third round"); nothing is exported.

- grey one-channel backbone (colour-folded ImageNet weights), input 320 px,
  harmonisation ``stretch`` (the serving path), global average pooling, a dense
  sigmoid; BatchNorm kept in inference mode; class-balanced weights; batch 16;
- every epoch, each fit image is replaced with probability 0.5 by a new look
  (``training.look.vary_look``: window, gamma, resolution, blur, noise, JPEG,
  small geometry); no flip;
- variant 1: dropout 0.3; 3 epochs head only (Adam 1e-3), then 12 epochs of the
  whole backbone (Adam 5e-5);
- variant 2: the dense head starts as the L2 logistic head fitted on the frozen
  features (penalty chosen on the tuning split), so epoch 0 *is* the frozen
  model; then 8 epochs of the whole backbone (Adam 3e-5);
- the epoch with the best tuning AUC is kept (variant 1: from epoch 2 on).

Runs: ``A`` both sources with the shipped three-way split (held-out AUC per
source); ``B`` NIH -> JSRT and ``C`` JSRT -> NIH (fit on one source's train +
validation split, its tuning split for the epoch, tested on every image of the
other source: the ablation's leave-one-source-out protocol). About 35 minutes
for both variants and all runs on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.preprocessing import to_model_square
from training.ablation import JSRT, NIH, Folder, read_folder, split_by_source
from training.heads import choose_l2, fit_logistic
from training.look import vary_look
from training.metrics import compute_auc
from training.split import split_three
from training.train_head import fold_colour_channels

SIZE = 320
SEED = 1337
BATCH = 16


def squares(grays: list[np.ndarray]) -> np.ndarray:
    """The node's own model input at ``SIZE``: stretched grey squares (n, S, S, 1) float32."""
    return np.stack([to_model_square(g, SIZE, "stretch") for g in grays])[..., None].astype(np.float32)


def build(dropout: float) -> tuple[Any, Any, Any, Any]:
    """(classifier, pooled-feature model, backbone, dense head), ImageNet weights folded to one grey channel."""
    import keras

    from training.weights import default_weights_path, validate_weights

    weights = default_weights_path()
    validate_weights(weights)
    keras.utils.set_random_seed(SEED)
    rgb = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False,
                                         weights=str(weights))
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 1), alpha=0.35, include_top=False, weights=None)
    base.set_weights(fold_colour_channels(rgb.get_weights(), base.get_weights()))
    inputs = keras.Input((SIZE, SIZE, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs),
                                                        training=False))
    top = keras.layers.Dropout(dropout)(pooled) if dropout else pooled  # before the Dense: the seeds' order
    dense = keras.layers.Dense(1, activation="sigmoid")
    return keras.Model(inputs, dense(top)), keras.Model(inputs, pooled), base, dense


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=32, verbose=0))[:, 0]


def fit_epoch(model: Any, folder: Folder, fit_idx: np.ndarray, y: np.ndarray, rng: np.random.Generator,
              class_weight: dict[int, float]) -> None:
    grays = [vary_look(folder.grays[i], rng) if rng.random() < 0.5 else folder.grays[i] for i in fit_idx]
    x = squares(grays)
    order = rng.permutation(len(y))
    model.fit(x[order], y[order], batch_size=BATCH, epochs=1, verbose=0, class_weight=class_weight)


def run(variant: int, name: str, folder: Folder, fit_idx: np.ndarray, tune_idx: np.ndarray,
        tests: dict[str, np.ndarray]) -> dict[str, Any]:
    """One training run; returns the tuning history and the AUC of each test set."""
    import keras

    start = time.time()
    model, pooled_model, base, dense = build(0.3 if variant == 1 else 0.0)
    labels = folder.labels
    y = labels[fit_idx].astype(np.float32)
    tune_x, tune_y = squares([folder.grays[i] for i in tune_idx]), labels[tune_idx]
    positive = float(y.mean())
    class_weight = {0: 0.5 / (1 - positive), 1: 0.5 / positive}
    rng = np.random.default_rng(SEED)
    history: list[float] = []
    best: tuple[float, int, Any] = (-1.0, -1, None)
    extra: dict[str, Any] = {}
    if variant == 1:
        schedule = [("head", 1e-3)] * 3 + [("all", 5e-5)] * 12
        first_candidate = 2
    else:
        features = np.asarray(pooled_model.predict(squares([folder.grays[i] for i in fit_idx]), batch_size=32,
                                                   verbose=0), dtype=np.float64)
        tune_features = np.asarray(pooled_model.predict(tune_x, batch_size=32, verbose=0), dtype=np.float64)
        l2, _ = choose_l2(features, y, tune_features, tune_y)
        head = fit_logistic(features, y, l2)
        dense.set_weights([head.weights[:, None].astype(np.float32), np.array([head.bias], np.float32)])
        extra["l2"] = l2
        auc = compute_auc(tune_y, predict(model, tune_x))
        history.append(round(float(auc), 4))
        best = (auc, 0, model.get_weights())
        schedule = [("all", 3e-5)] * 8
        first_candidate = 0
    stage = None
    for step, (part, learning_rate) in enumerate(schedule):
        epoch = step if variant == 1 else step + 1
        if part != stage:
            stage = part
            base.trainable = part == "all"
            model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy")
        fit_epoch(model, folder, fit_idx, y, rng, class_weight)
        auc = compute_auc(tune_y, predict(model, tune_x))
        history.append(round(float(auc), 4))
        print(f"{name} variant {variant} epoch {epoch} ({part}): tuning AUC {auc:.3f}, "
              f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
        if epoch >= first_candidate and auc > best[0]:
            best = (auc, epoch, model.get_weights())
    model.set_weights(best[2])
    result: dict[str, Any] = {"run": name, "variant": variant, **extra, "best_epoch": best[1],
                              "tuning_auc": float(best[0]), "history": history}
    for test, indices in tests.items():
        result[test] = float(compute_auc(labels[indices], predict(model, squares([folder.grays[i]
                                                                                  for i in indices]))))
        result[f"{test}_n"] = int(len(indices))
    result["seconds"] = round(time.time() - start)
    return result


def plan_runs(folder: Folder, runs: list[str]) -> list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """(name, fit indices, tuning indices, test sets) of each requested run."""
    sources, labels = np.array(folder.sources), folder.labels
    planned = []
    if "A" in runs:
        split = split_by_source(folder)
        held = split["validation"]
        planned.append(("A_both", split["train"], split["tuning"],
                        {"heldout_nih": held[sources[held] == NIH], "heldout_jsrt": held[sources[held] == JSRT],
                         "heldout_both": held}))
    for key, source, other, name in (("B", NIH, JSRT, "B_nih_to_jsrt"), ("C", JSRT, NIH, "C_jsrt_to_nih")):
        if key in runs:
            members = np.flatnonzero(sources == source)
            inner = split_three([folder.groups[i] for i in members], labels[members])
            planned.append((name, members[np.concatenate([inner["train"], inner["validation"]])],
                            members[inner["tuning"]], {"loso": np.flatnonzero(sources == other)}))
    return planned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=int, choices=(1, 2), action="append",
                        help="recipe variant (repeatable; default both)")
    parser.add_argument("--runs", default="A,B,C", help="comma-separated subset of A,B,C")
    parser.add_argument("--report", type=Path, help="append one JSON line per run here")
    args = parser.parse_args(argv)
    runs = [part.strip() for part in args.runs.split(",") if part.strip()]
    if not runs or set(runs) - {"A", "B", "C"}:
        parser.error(f"--runs must name some of A, B, C; got {args.runs!r}")
    folder = read_folder("xray")
    for variant in args.variant or [1, 2]:
        for name, fit_idx, tune_idx, tests in plan_runs(folder, runs):
            result = run(variant, name, folder, fit_idx, tune_idx, tests)
            line = json.dumps(result)
            print(line, flush=True)
            if args.report:
                with args.report.open("a", encoding="utf-8") as report:
                    report.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
