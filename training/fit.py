"""The TensorFlow half of ``training.train``: two-stage fit, export, artefacts."""

from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import card as card_module
from training.augment import AugmentConfig, make_augment_fn
from training.config import Splits, TrainConfig, config_to_dict
from training.data import LoadedData
from training.export import check_tflite_matches, export_tflite
from training.litert import run_tflite
from training.metrics import choose_threshold, compute_confusion, summarise
from training.model import BuiltModel, apply_fine_tuning, build_model, compile_classifier
from training.weights import WEIGHTS_SHA256
from training.plots import plot_confusion, plot_history, plot_roc


def make_train_dataset(part: LoadedData, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, batched, augmented training batches."""
    augment = make_augment_fn(AugmentConfig(config.horizontal_flip, config.fill_mode, config.seed, config.texture_augmentation))
    dataset = tf.data.Dataset.from_tensor_slices((part.images, part.labels.astype(np.float32)[:, None]))
    dataset = dataset.shuffle(len(part.labels), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def compute_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (2 * n_class): both classes weigh the same in the loss."""
    counts = np.bincount(labels, minlength=2)
    return {label: float(len(labels) / (2.0 * max(count, 1))) for label, count in enumerate(counts)}


def fit_stage(model: BuiltModel, config: TrainConfig, splits: Splits, epochs: int, learning_rate: float) -> dict[str, Any]:
    """Compile and fit one stage with early stopping on the tuning loss (best weights restored)."""
    compile_classifier(model.classifier, learning_rate)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = model.classifier.fit(
        make_train_dataset(splits.train, config),
        validation_data=(splits.tuning.images, splits.tuning.labels.astype(np.float32)[:, None]),
        epochs=epochs,
        class_weight=compute_class_weights(splits.train.labels),
        callbacks=[stopper],
        verbose=2,
    ).history
    best = int(np.argmin(history["val_loss"]))
    return {"history": history, "best_epoch": best + 1, "best_val_loss": float(history["val_loss"][best]),
            "epochs_run": len(history["val_loss"])}


def train_two_stages(model: BuiltModel, config: TrainConfig, splits: Splits) -> dict[str, Any]:
    """Stage 1 (frozen base) then stage 2 (last layers unfrozen, BatchNorm frozen)."""
    print(f"stage 1: base frozen, Adam {config.learning_rate_stage1}, up to {config.epochs_stage1} epochs", flush=True)
    stage1 = fit_stage(model, config, splits, config.epochs_stage1, config.learning_rate_stage1)
    stage1_weights = model.classifier.get_weights()
    trainable = apply_fine_tuning(model.base, config.unfrozen_layers)
    print(f"stage 2: last {config.unfrozen_layers} base layers unfrozen ({trainable} with weights, BatchNorm frozen), "
          f"Adam {config.learning_rate_stage2}, up to {config.epochs_stage2} epochs", flush=True)
    stage2 = fit_stage(model, config, splits, config.epochs_stage2, config.learning_rate_stage2)
    kept = "stage2"
    if stage2["best_val_loss"] > stage1["best_val_loss"]:
        # Fine-tuning did not improve the tuning loss: ship the stage-1 weights.
        model.classifier.set_weights(stage1_weights)
        kept = "stage1"
    print(f"kept the {kept} weights (tuning loss stage 1 {stage1['best_val_loss']:.4f}, "
          f"stage 2 {stage2['best_val_loss']:.4f})", flush=True)
    return {"stage1": stage1, "stage2": stage2, "kept": kept}


def merge_history(stages: dict[str, Any]) -> dict[str, list[float]]:
    """Stage 1 and stage 2 histories end to end."""
    first, second = stages["stage1"]["history"], stages["stage2"]["history"]
    return {key: [float(v) for v in first.get(key, [])] + [float(v) for v in second.get(key, [])] for key in first}


def run_training(config: TrainConfig, splits: Splits, started: float) -> dict[str, Any]:
    """Train, save, export and check, evaluate with LiteRT, write plots and card; return the card."""
    keras.utils.set_random_seed(config.seed)
    out_dir = Path(config.out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    model = build_model(config.input_size, Path(config.weights_path), config.dropout)
    fit_started = time.monotonic()
    stages = train_two_stages(model, config, splits)
    fit_seconds = time.monotonic() - fit_started
    model.exported.save(out_dir / card_module.KERAS_FILE)
    tflite_path = out_dir / card_module.MODEL_FILE
    outputs = export_tflite(model.exported, tflite_path)
    differences = check_tflite_matches(model.exported, tflite_path, splits.validation.images)
    print(f"LiteRT export matches Keras on {len(splits.validation.labels)} validation images: {differences}", flush=True)
    card = build_card(config, splits, model, stages, outputs, differences, tflite_path)
    card["training"]["fit_seconds"] = round(fit_seconds, 1)
    card["training"]["total_seconds"] = round(time.monotonic() - started, 1)
    card_module.write_card(out_dir / card_module.CARD_FILE, card)
    return card


def evaluate_parts(tflite_path: Path, splits: Splits) -> tuple[float, dict[str, Any], dict[str, np.ndarray]]:
    """Threshold from the tuning split; metrics of tuning and validation with the shipped tflite."""
    scores = {name: run_tflite(tflite_path, getattr(splits, name).images).probability for name in ("tuning", "validation")}
    threshold = choose_threshold(splits.tuning.labels, scores["tuning"])
    metrics = {name: summarise(getattr(splits, name).labels, scores[name], threshold) for name in scores}
    subset = [i for i, r in enumerate(splits.validation.records) if r.label == 0 or r.other_findings == 0]
    if any(record.other_findings is not None for record in splits.validation.records):
        metrics["validation_no_other_findings"] = summarise(
            splits.validation.labels[subset], scores["validation"][subset], threshold
        )
    return threshold, metrics, scores


def write_plots(config: TrainConfig, splits: Splits, stages: dict[str, Any], threshold: float,
                metrics: dict[str, Any], scores: dict[str, np.ndarray]) -> None:
    """training_curves.png, roc.png, confusion_matrix.png."""
    plots = Path(config.out_dir) / "plots"
    plot_history(merge_history(stages), stages["stage1"]["epochs_run"], plots / "training_curves.png")
    plot_roc({name: (getattr(splits, name).labels, scores[name], metrics[name]["auc"]) for name in scores},
             plots / "roc.png")
    confusion = compute_confusion(splits.validation.labels, scores["validation"], threshold)
    plot_confusion(confusion, threshold, f"{config.modality} held-out validation", plots / "confusion_matrix.png")


def build_card(config: TrainConfig, splits: Splits, model: BuiltModel, stages: dict[str, Any],
               outputs: dict[str, int], differences: dict[str, float], tflite_path: Path) -> dict[str, Any]:
    """Everything the plug-in and a reviewer need to know about the model."""
    threshold, metrics, scores = evaluate_parts(tflite_path, splits)
    write_plots(config, splits, stages, threshold, metrics, scores)
    kernel, bias = model.head.get_weights()
    feature_shape = [int(v) for v in model.base.output.shape[1:]]
    return {
        "model_id": card_module.compute_model_id(tflite_path),
        "name": card_module.get_model_name(config.modality),
        "version": config.version,
        "modality": config.modality,
        "input_size": config.input_size,
        "input": {"dtype": "float32", "shape": [-1, config.input_size, config.input_size, 3], "range": [0, 255],
                  "rescaling": "inside the model: x / 127.5 - 1"},
        "threshold": threshold,
        "threshold_source": "Youden's J on the tuning split (not the held-out validation split)",
        "outputs": outputs,
        "output_shapes": {"probability": [-1, 1], "features": [-1, *feature_shape]},
        "head": {"weights": [float(v) for v in kernel[:, 0]], "bias": float(bias[0]),
                 "activation": "sigmoid", "cam": "features[h,w,:] . weights + bias (logit per position)"},
        "metrics": metrics,
        "export_check": {"max_abs_difference": differences, "tolerance": 1e-4,
                         "images": len(splits.validation.labels)},
        "data_digest": splits.train.digest,
        "split": {
            "method": "grouped by patient_id or series_block (labels.csv), stratified by class, fixed seed",
            "seed": config.seed, "validation_fraction": config.validation_fraction,
            "tuning_fraction_of_rest": config.tuning_fraction,
            "counts": {name: len(getattr(splits, name).labels) for name in ("train", "tuning", "validation")},
            "groups": splits.groups,
            "files": {name: [r.file for r in getattr(splits, name).records] for name in ("train", "tuning", "validation")},
        },
        "hyperparameters": config_to_dict(config),
        "training": {
            "kept_weights": stages["kept"],
            "stage1": {k: stages["stage1"][k] for k in ("epochs_run", "best_epoch", "best_val_loss")},
            "stage2": {k: stages["stage2"][k] for k in ("epochs_run", "best_epoch", "best_val_loss")},
            "history": merge_history(stages),
            "base_weights_sha256": WEIGHTS_SHA256,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
        },
        "created": dt.date.today().isoformat(),
        "preprocessing": card_module.PREPROCESSING_FLOAT_RGB,
        "intended_use": "research decision support only; not validated for clinical use",
    }
