"""The shipped recipe: frozen ImageNet MobileNetV2 + a calibrated logistic head + a learned input gate.

``python -m training.train_head --modality ct`` (artefacts in ``models/<modality>``)

1. Every image of the training folder is decoded and put through the node's own
   ``diagnostics.preprocessing.to_model_square`` (8-bit resize + percentile
   stretch, the ablation's choice; the model takes that grey square as one channel); the training
   side also gets ``--copies`` random new looks of each image (``training.look.vary_look``: window, gamma, resolution, blur,
   noise, JPEG, small geometry).
2. Grouped three-way split (by ``series_block`` / ``patient_id``, stratified by
   class; for X-ray within each source): train / tuning / held-out validation.
3. Pooled features of the frozen backbone; an L2 logistic head fitted in numpy,
   its penalty chosen on the tuning split; a temperature fitted on the tuning
   split (``training.heads.fit_temperature``) and folded into the head.
4. The two-output Keras model (probability, 7 x 7 x 1280 features) gets that head,
   is exported to LiteRT and checked against Keras; every reported figure is
   computed with the exported ``.tflite``.
5. The input gate (``diagnostics.gate``): a ct / xray / other classifier and a
   Mahalanobis distance to this model's training features, written to
   ``gate.json`` (thresholds from training/tuning images only).

``ct_check_lpctdx`` is never read here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.gate import GATE_CLASSES, GATE_FILE
from diagnostics.preprocessing import DEFAULT_HARMONISATION, HARMONISATIONS, INPUT_SIZE, to_model_square
from training import card as card_module
from training.ablation import NIH, JSRT, Folder, read_folder, reference_cdf, split_by_source
from training.split import split_three
from training.data import REPO_ROOT, compute_digest, default_data_dir
from training.heads import (choose_l2, compute_brier, compute_ece, compute_sigmoid, fit_gaussian, fit_logistic,
                            fit_temperature, reliability_bins)
from training.look import foreign_look, vary_look
from training.metrics import choose_threshold, compute_auc, summarise
from training.negatives import HELD_OUT, load_package_images, make_variants

SEED = 1337
VALIDATION_SCOPE = {
    "ct": {
        "validated_on": ["held-out IQ-OTH/NCCD slices (other series blocks of the same two Baghdad hospitals, "
                         "Siemens SOMATOM, 8-bit JPEG exports in the dataset's windows of width 350-1200 HU and "
                         "centre 50-600 HU: soft-tissue to bone type, lungs dark)"],
        "not_validated_on": ["any other CT scanner, hospital or export: the only other scanner measured is "
                             "ct_check_lpctdx (TCIA Lung-PET-CT-Dx, 2 patients, lung window; see "
                             "generalisation.ct_check_lpctdx and docs/MODELS.md), below the 0.85 AUC asked for; "
                             "the input gate flags such slices out-of-distribution",
                             "lung-window exports (what most PACS send; the only ones measured are the 60 "
                             "ct_check_lpctdx slices), contrast-enhanced CT, children, slices outside the lungs"],
    },
    "xray": {
        "validated_on": ["held-out NIH ChestX-ray14 patients and held-out JSRT patients (per source), and "
                         "leave-one-source-out between them (see generalisation)"],
        "not_validated_on": ["any other hospital or detector; portable, lateral or paediatric films; "
                             "post-processed exports", "benign nodules are scored like malignant ones "
                             "(see generalisation.benign_nodules)"],
    },
}
FLAG_QUANTILE = 0.99
GATE_COMPONENTS = 32
GATE_L2_CHOICES = (1e-2, 1e-1, 1.0, 10.0)
GATE_FOLDS = 5


def build_models(size: int) -> tuple[Any, Any, Any]:
    """(export model with outputs probability + features, pooled-feature model, head layer)."""
    import keras

    from training.weights import default_weights_path, validate_weights

    weights = default_weights_path()
    validate_weights(weights)
    rgb = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False,
                                         weights=str(weights))
    # one grey channel in: the same function as the grey square copied to three channels, without the copy
    base = keras.applications.MobileNetV2(input_shape=(size, size, 1), alpha=0.35, include_top=False, weights=None)
    base.set_weights(fold_colour_channels(rgb.get_weights(), base.get_weights()))
    base.trainable = False
    inputs = keras.Input((size, size, 1), name="image")
    features = base(keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_to_unit")(inputs),
                    training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    head = keras.layers.Dense(1, activation="sigmoid", name="probability")
    probability = head(pooled)
    exported = keras.Model(inputs, {"probability": probability, "features": features}, name="lungledger_export")
    return exported, keras.Model(inputs, pooled), head


def fold_colour_channels(weights: list[np.ndarray], like: list[np.ndarray]) -> list[np.ndarray]:
    """Weights of a 3-channel-input network for its 1-channel twin (``like``): the first convolution's kernel
    [kh, kw, 3, out] is summed over its input channels, since conv(g, g, g) = conv_summed(g); the rest is copied."""
    folded = []
    for value, target in zip(weights, like, strict=True):
        value = np.asarray(value)
        if value.shape != np.shape(target):
            if value.ndim != 4 or value.shape[2] != 3 or np.shape(target) != (*value.shape[:2], 1, value.shape[3]):
                raise ValueError(f"cannot fold weights of shape {value.shape} into {np.shape(target)}")
            value = value.sum(axis=2, keepdims=True)
        folded.append(value)
    return folded


HARMONISATION = [DEFAULT_HARMONISATION]  # set from --harmonisation before any image is prepared
# 'match' only: the mean cumulative histogram of the training split's images, set before any image is prepared
REFERENCE_CDF: list[np.ndarray | None] = [None]


def tensors(grays: list[np.ndarray], size: int) -> np.ndarray:
    """The model inputs of ``grays``: harmonised grey squares (n, S, S, 1) float32, what the node builds."""
    squares = [to_model_square(g, size, HARMONISATION[0], REFERENCE_CDF[0]) for g in grays]
    return np.stack(squares)[..., None].astype(np.float32)


def pooled_features(model: Any, grays: list[np.ndarray], size: int) -> np.ndarray:
    out = []
    for start in range(0, len(grays), 128):
        out.append(np.asarray(model.predict(tensors(grays[start:start + 128], size), batch_size=32, verbose=0)))
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 1280))


def augmented_grays(folder: Folder, indices: np.ndarray, copies: int, flip: bool, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [vary_look(folder.grays[i], rng, flip=flip) for _ in range(copies) for i in indices]


def run_tflite_all(path: Path, grays: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, pooled features) of the exported model, in chunks."""
    from training.litert import run_tflite

    probabilities, pooled = [], []
    for start in range(0, len(grays), 64):
        outputs = run_tflite(path, tensors(grays[start:start + 64], size))
        probabilities.append(outputs.probability)
        pooled.append(outputs.features.mean(axis=(1, 2)))
    return np.concatenate(probabilities), np.concatenate(pooled).astype(np.float64)


def fit_head(train_x: np.ndarray, train_y: np.ndarray, tune_x: np.ndarray, tune_y: np.ndarray) -> dict[str, Any]:
    l2, scores = choose_l2(train_x, train_y, tune_x, tune_y)
    head = fit_logistic(train_x, train_y, l2)
    temperature = fit_temperature(head.logits(tune_x), tune_y)
    return {"head": head, "l2": l2, "l2_tuning_auc": {str(k): v for k, v in scores.items()},
            "temperature": temperature}


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    raw, calibrated = compute_sigmoid(logits), compute_sigmoid(logits / temperature)
    return {"n": int(len(labels)),
            "before": {"brier": compute_brier(raw, labels), "ece": compute_ece(raw, labels),
                       "bins": reliability_bins(raw, labels)},
            "after": {"brier": compute_brier(calibrated, labels), "ece": compute_ece(calibrated, labels),
                      "bins": reliability_bins(calibrated, labels)}}


def plot_reliability(report: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for key, colour in (("before", "tab:red"), ("after", "tab:blue")):
        bins = report[key]["bins"]
        axis.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", color=colour,
                  label=f"{key} (ECE {report[key]['ece']:.3f}, Brier {report[key]['brier']:.3f})")
    axis.set_xlabel("predicted probability of cancer")
    axis.set_ylabel("observed share of cancer")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def fit_gate_classifier(x: np.ndarray, target: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest logistic heads of the gate's classes: (weights [C, classes], biases [classes])."""
    heads = [fit_logistic(x, (target == index).astype(np.float64), l2) for index in range(len(GATE_CLASSES))]
    return np.stack([head.weights for head in heads], axis=1), np.array([head.bias for head in heads])


def choose_gate_l2(x: np.ndarray, target: np.ndarray, groups: np.ndarray) -> tuple[float, dict[str, float]]:
    """The penalty with the best mean log-likelihood of the true class on held-out groups (grouped k-fold:
    a patient / series block / source photograph and all its variants are always on one side)."""
    names = np.unique(groups)
    fold_of = {name: index % GATE_FOLDS for index, name in enumerate(np.random.default_rng(SEED).permutation(names))}
    folds = np.array([fold_of[g] for g in groups])
    scores: dict[str, float] = {}
    for l2 in GATE_L2_CHOICES:
        total = 0.0
        for fold in range(GATE_FOLDS):
            train, test = folds != fold, folds == fold
            weights, biases = fit_gate_classifier(x[train], target[train], l2)
            logits = x[test] @ weights + biases
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            total += float(log_p[np.arange(int(test.sum())), target[test]].sum())
        scores[str(l2)] = total / len(x)
    best = max(GATE_L2_CHOICES, key=lambda value: scores[str(value)])
    return best, scores


def fit_gate(modality: str, own_fit: np.ndarray, own_tune: np.ndarray, chest: dict[str, np.ndarray],
             negatives: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """ct / xray / other classifier (one-vs-rest logistic, softmax of the three logits; its penalty chosen by
    grouped cross-validation on these images, ``groups`` naming each row's patient / block / photograph) +
    distance thresholds."""
    classes = {"ct": chest["ct"], "xray": chest["xray"], "other": negatives}
    x = np.concatenate([classes[name] for name in GATE_CLASSES])
    target = np.concatenate([np.full(len(classes[name]), index) for index, name in enumerate(GATE_CLASSES)])
    row_groups = np.concatenate([np.char.add(f"{name}:", np.asarray(groups[name], dtype=str))
                                 for name in GATE_CLASSES])
    l2, l2_scores = choose_gate_l2(x, target, row_groups)
    weights_matrix, biases = fit_gate_classifier(x, target, l2)
    gaussian = fit_gaussian(own_fit, components=GATE_COMPONENTS)
    tune_distance = gaussian.distance(own_tune)
    fit_distance = gaussian.distance(own_fit)
    flag = float(np.quantile(tune_distance, FLAG_QUANTILE))
    negative_distance = gaussian.distance(negatives)
    # refuse only far beyond every chest image of this modality seen in training and tuning
    refuse = float(max(np.max(tune_distance), np.max(fit_distance)) * 2.0)
    return {
        "modality": modality,
        "classifier": {"classes": list(GATE_CLASSES), "weights": weights_matrix.round(7).tolist(),
                       "bias": [round(float(b), 7) for b in biases], "l2": l2,
                       "l2_grouped_cv_log_likelihood": l2_scores,
                       "fitted_on": {name: int(len(classes[name])) for name in GATE_CLASSES}},
        "distance": {"mean": gaussian.mean.round(7).tolist(), "basis": gaussian.basis.round(7).tolist(),
                     "variances": gaussian.variances.round(9).tolist(), "components": GATE_COMPONENTS},
        "flag_distance": flag, "refuse_distance": refuse,
        "thresholds_from": {"flag": f"{FLAG_QUANTILE:.0%} quantile of the tuning split's distances",
                            "refuse": "2 x the largest distance of any training or tuning image of this modality"},
        "distances_seen": {"fit_max": float(np.max(fit_distance)), "tuning_median": float(np.median(tune_distance)),
                           "tuning_max": float(np.max(tune_distance)),
                           "negatives_min": float(np.min(negative_distance)),
                           "negatives_median": float(np.median(negative_distance))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=("ct", "xray"), required=True)
    parser.add_argument("--out")
    parser.add_argument("--size", type=int, default=INPUT_SIZE)
    parser.add_argument("--copies", type=int, default=3, help="random new looks per training image")
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--harmonisation", choices=HARMONISATIONS, default=DEFAULT_HARMONISATION)
    parser.add_argument("--limit", type=int, default=0, help="use only this many images per folder (tests)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    HARMONISATION[0] = args.harmonisation
    started = time.monotonic()
    modality, size = args.modality, args.size
    out_dir = Path(args.out).resolve() if args.out else REPO_ROOT / "models" / modality
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    import keras
    import tensorflow as tf

    from training.export import check_tflite_matches, export_tflite

    keras.utils.set_random_seed(SEED)
    folders = {name: read_folder(name, args.limit) for name in ("ct", "xray")}
    folder = folders[modality]
    split = split_three(folder.groups, folder.labels) if modality == "ct" else split_by_source(folder)
    for name, indices in split.items():
        print(f"{name:>10}: {len(indices)} images ({int(folder.labels[indices].sum())} cancer)", flush=True)
    if args.harmonisation == "match":  # the target look: the training split's own images (stored in the card)
        REFERENCE_CDF[0] = reference_cdf([folder.grays[i] for i in split["train"]], size)
    exported, pooled_model, head_layer = build_models(size)
    clean = pooled_features(pooled_model, folder.grays, size)
    flip = modality == "ct"
    augmented = pooled_features(pooled_model, augmented_grays(folder, split["train"], args.copies, flip, SEED), size)
    train_x = np.concatenate([clean[split["train"]], augmented])
    train_y = np.concatenate([folder.labels[split["train"]]] * (args.copies + 1))
    tune_x, tune_y = clean[split["tuning"]], folder.labels[split["tuning"]]
    fitted = fit_head(train_x, train_y, tune_x, tune_y)
    head, temperature = fitted["head"], fitted["temperature"]
    print(f"head: l2 {fitted['l2']}, temperature {temperature:.3f}", flush=True)
    calibrated_w = head.weights / temperature
    calibrated_b = head.bias / temperature
    head_layer.set_weights([calibrated_w.astype(np.float32)[:, None], np.array([calibrated_b], dtype=np.float32)])

    tflite_path = out_dir / card_module.MODEL_FILE
    outputs = export_tflite(exported, tflite_path)
    validation_tensors = tensors([folder.grays[i] for i in split["validation"]], size)
    differences = check_tflite_matches(exported, tflite_path, validation_tensors)
    print(f"LiteRT export matches Keras: {differences}", flush=True)

    probabilities, lite_pooled = run_tflite_all(tflite_path, folder.grays, size)
    threshold = choose_threshold(tune_y, probabilities[split["tuning"]])
    metrics: dict[str, Any] = {}
    for name in ("tuning", "validation"):
        idx = split[name]
        metrics[name] = summarise(folder.labels[idx], probabilities[idx], threshold)
    if modality == "xray":
        sources = np.array(folder.sources)
        for source, short in ((NIH, "nih"), (JSRT, "jsrt")):
            idx = split["validation"][sources[split["validation"]] == source]
            metrics[f"validation_{short}"] = summarise(folder.labels[idx], probabilities[idx], threshold)
        idx = np.array([i for i in split["validation"]
                        if folder.labels[i] == 0 or folder.records[i].other_findings == 0])
        metrics["validation_no_other_findings"] = summarise(folder.labels[idx], probabilities[idx], threshold)
    logits = np.log(np.clip(probabilities, 1e-7, 1 - 1e-7) / np.clip(1 - probabilities, 1e-7, 1))
    raw_logits = logits * temperature  # what the head gave before temperature scaling
    calibration = {name: calibration_report(raw_logits[split[name]], folder.labels[split[name]], temperature)
                   for name in ("tuning", "validation")}
    plot_reliability(calibration["validation"], f"{modality}: held-out validation, before/after temperature "
                     f"T={temperature:.2f}", out_dir / "plots" / "reliability.png")
    if out_dir == REPO_ROOT / "models" / modality:  # the shipped model's diagram is also in plots/ (not for --out)
        plot_reliability(calibration["validation"], f"{modality}: held-out validation, before/after temperature "
                         f"T={temperature:.2f}", REPO_ROOT / "plots" / f"reliability_{modality}.png")

    generalisation: dict[str, Any] = {}
    if modality == "ct":
        foreign = pooled_features(pooled_model, [foreign_look(folder.grays[i], int(i)) for i in split["validation"]],
                                  size)
        generalisation["validation_foreign_look_auc"] = compute_auc(folder.labels[split["validation"]],
                                                                    head.logits(foreign))
    else:
        sources = np.array(folder.sources)
        for source, other, name in ((NIH, JSRT, "nih_to_jsrt"), (JSRT, NIH, "jsrt_to_nih")):
            members = np.flatnonzero(sources == source)
            inner = split_three([folder.groups[i] for i in members], folder.labels[members])
            fit_idx = members[np.concatenate([inner["train"], inner["validation"]])]
            tune_idx = members[inner["tuning"]]
            aug = pooled_features(pooled_model, augmented_grays(folder, fit_idx, args.copies, False, SEED + 7), size)
            x = np.concatenate([clean[fit_idx], aug])
            y = np.concatenate([folder.labels[fit_idx]] * (args.copies + 1))
            loso = fit_head(x, y, clean[tune_idx], folder.labels[tune_idx])
            target = np.flatnonzero(sources == other)
            generalisation[f"loso_{name}"] = {
                "trained_on": source, "tested_on": other, "n": int(len(target)),
                "auc": compute_auc(folder.labels[target], loso["head"].logits(clean[target]))}
        benign_dir = default_data_dir("xray_benign_nodule")
        if benign_dir.is_dir():
            from diagnostics.imaging import decode_image

            files = sorted(p for p in benign_dir.iterdir() if p.suffix.lower() == ".png")
            benign_grays = [decode_image(p.read_bytes(), "xray").pixels for p in files]
            benign_p, _ = run_tflite_all(tflite_path, benign_grays, size)
            normal_p = probabilities[split["validation"]][folder.labels[split["validation"]] == 0]
            generalisation["benign_nodules"] = {
                "n": len(files), "called_cancer": int(np.sum(benign_p >= threshold)),
                "mean_probability": float(np.mean(benign_p)),
                "auc_vs_validation_normals": compute_auc(
                    np.concatenate([np.ones(len(benign_p)), np.zeros(len(normal_p))]),
                    np.concatenate([benign_p, normal_p]))}

    # ---- input gate, on the exported model's own pooled features
    other = "xray" if modality == "ct" else "ct"
    other_folder = folders[other]
    other_split = split_three(other_folder.groups, other_folder.labels) if other == "ct" \
        else split_by_source(other_folder)
    other_fit_idx = np.concatenate([other_split["train"], other_split["tuning"]])
    own_fit_idx = np.concatenate([split["train"], split["tuning"]])
    _, other_pooled = run_tflite_all(tflite_path, [other_folder.grays[i] for i in other_fit_idx], size)
    rng = np.random.default_rng(SEED + 11)
    other_aug = [vary_look(other_folder.grays[i], rng, flip=other == "ct") for i in other_fit_idx]
    own_aug = [vary_look(folder.grays[i], rng, flip=flip) for i in own_fit_idx]
    _, other_aug_pooled = run_tflite_all(tflite_path, other_aug, size)
    _, own_aug_pooled = run_tflite_all(tflite_path, own_aug, size)
    package = load_package_images()
    negative_grays, negative_names = [], []
    for name, gray in sorted(package.items()):
        if name not in HELD_OUT:
            variants = make_variants(gray, rng, 8)
            negative_grays.extend(variants)
            negative_names += [name] * len(variants)
    negative_grays += [vary_look(g, rng) for g in negative_grays]
    negative_names += negative_names
    _, negative_pooled = run_tflite_all(tflite_path, negative_grays, size)
    chest = {modality: np.concatenate([lite_pooled[own_fit_idx], own_aug_pooled]),
             other: np.concatenate([other_pooled, other_aug_pooled])}
    own_groups = [folder.groups[i] for i in own_fit_idx]
    other_groups = [other_folder.groups[i] for i in other_fit_idx]
    gate = fit_gate(modality, np.concatenate([lite_pooled[split["train"]], own_aug_pooled]),
                    lite_pooled[split["tuning"]], chest, negative_pooled,
                    {modality: np.array(own_groups * 2), other: np.array(other_groups * 2),
                     "other": np.array(negative_names)})
    print(f"gate classifier: L2 {gate['classifier']['l2']} (grouped CV log-likelihood "
          f"{gate['classifier']['l2_grouped_cv_log_likelihood']})", flush=True)
    gate_bytes = json.dumps(gate, separators=(",", ":")).encode()
    (out_dir / GATE_FILE).write_bytes(gate_bytes)
    print(f"gate: {gate['distances_seen']}, flag {gate['flag_distance']:.2f}, refuse {gate['refuse_distance']:.2f}",
          flush=True)

    card = {
        "model_id": card_module.compute_model_id(tflite_path),
        "name": card_module.get_model_name(modality),
        "version": args.version,
        "modality": modality,
        "input_size": size,
        "input": card_module.describe_input(size),
        "threshold": threshold,
        "threshold_source": "Youden's J on the tuning split (calibrated probabilities; not the validation split)",
        "outputs": outputs,
        "output_shapes": {"probability": [-1, 1], "features": [-1, size // 32, size // 32, 1280]},
        "head": {"weights": [float(v) for v in calibrated_w], "bias": float(calibrated_b), "activation": "sigmoid",
                 "cam": "features[h,w,:] . weights + bias (logit per position)",
                 "note": "calibrated head (raw head / temperature), what the tflite computes"},
        "calibration": {"method": "temperature scaling on the tuning split", "temperature": temperature,
                        "raw_head": {"weights": [float(v) for v in head.weights], "bias": float(head.bias)},
                        "l2": fitted["l2"], "l2_tuning_auc": fitted["l2_tuning_auc"],
                        "tuning": _strip_bins(calibration["tuning"]),
                        "validation": calibration["validation"]},
        "gate": {"file": GATE_FILE, "sha256": hashlib.sha256(gate_bytes).hexdigest(),
                 "flag_distance": gate["flag_distance"], "refuse_distance": gate["refuse_distance"],
                 "fitted_on": gate["classifier"]["fitted_on"], "thresholds_from": gate["thresholds_from"]},
        "data_digest": compute_digest(default_data_dir(modality), folder.records),
        "metrics": metrics,
        "generalisation": generalisation,
        "export_check": {"max_abs_difference": differences, "tolerance": 1e-4, "images": len(split["validation"])},
        "split": {"method": "grouped by patient_id or series_block, stratified by class"
                            + (" within each source" if modality == "xray" else "") + ", fixed seed",
                  "seed": SEED, "counts": {name: int(len(idx)) for name, idx in split.items()},
                  "files": {name: [folder.records[i].file for i in idx] for name, idx in split.items()}},
        "hyperparameters": {"recipe": "training.train_head", "backbone": "MobileNetV2 alpha 0.35 ImageNet, frozen",
                            "pooling": "global average", "harmonisation": args.harmonisation,
                            "look_copies_per_training_image": args.copies, "horizontal_flip": flip,
                            "data_dir": os.path.relpath(default_data_dir(modality), REPO_ROOT)},
        "training": {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                                  "python": platform.python_version()},
                     "total_seconds": round(time.monotonic() - started, 1)},
        "created": dt.date.today().isoformat(),
        "preprocessing": card_module.PREPROCESSING,
        "intended_use": "research decision support only; not validated for clinical use",
        **VALIDATION_SCOPE[modality],
    }
    if REFERENCE_CDF[0] is not None:  # what serving matches every input's histogram to (diagnostics.preprocessing)
        card["reference_cdf"] = [float(v) for v in REFERENCE_CDF[0]]
        card["reference_cdf_source"] = (f"mean cumulative 8-bit histogram of the {len(split['train'])} training-split "
                                        f"images resized to {size} px")
    card_module.write_card(out_dir / card_module.CARD_FILE, card)
    exported.save(out_dir / card_module.KERAS_FILE)
    v = metrics["validation"]
    print(f"done in {time.monotonic() - started:.0f}s: validation n={v['n']} auc={v['auc']:.3f} "
          f"[{v['auc_ci_low']:.3f}, {v['auc_ci_high']:.3f}] generalisation {json.dumps(generalisation)}", flush=True)
    return 0


def _strip_bins(report: dict[str, Any]) -> dict[str, Any]:
    return {key: ({k: v for k, v in value.items() if k != "bins"} if isinstance(value, dict) else value)
            for key, value in report.items()}


if __name__ == "__main__":
    sys.exit(main())
