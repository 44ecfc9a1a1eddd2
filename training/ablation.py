"""Frozen-feature ablation of the preprocessing: ``python -m training.ablation --report ablation.json``.

For each variant (harmonisation x input size x look augmentation) the ImageNet
MobileNetV2 (alpha 0.35) features are extracted once, a logistic-regression head
is fitted in numpy (``training.heads``; L2 penalty chosen on the tuning split)
and scored:

- CT: AUC on the held-out validation split, and on the same split after a strong
  fixed change of look (``training.look.foreign_look``: other window, gamma,
  blur, noise): a stand-in for another scanner that needs no second source.
- X-ray: held-out AUC per source (head trained on both sources), and
  leave-one-source-out AUC (trained on NIH only, tested on every JSRT image,
  and the reverse). ``--per-source 1`` z-scores the pooled features with each
  source's own mean and spread (of all its clean images, labels unused: what a
  hospital could compute from its own archive) before the head.

``ct_check_lpctdx`` is never read here: it is measured once, after every choice.
Features are cached under ``--cache`` (numpy ``.npz``, no pickle).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diagnostics.imaging import decode_image
from diagnostics.preprocessing import compute_cdf, resize_uint8, to_model_input
from training.data import Record, default_data_dir, list_records
from training.heads import choose_l2, fit_logistic
from training.look import foreign_look, vary_look
from training.metrics import compute_auc
from training.split import split_three

SEED = 1337
NIH = "NIH ChestX-ray14"
JSRT = "JSRT"


@dataclass
class Folder:
    records: list[Record]
    grays: list[np.ndarray]
    labels: np.ndarray
    groups: list[str]
    sources: list[str]


def read_folder(modality: str, limit: int = 0) -> Folder:
    """Decode a training folder; ``limit`` keeps only the first ``limit`` images per (source, class) (tests)."""
    data_dir = default_data_dir(modality)
    records = list_records(data_dir)
    if limit:
        kept: dict[tuple[str, int], int] = {}
        chosen = []
        for record in records:
            key = (record.source, record.label)
            if kept.get(key, 0) < limit:
                kept[key] = kept.get(key, 0) + 1
                chosen.append(record)
        records = chosen
    grays = [decode_image((data_dir / record.file).read_bytes(), modality).pixels for record in records]
    return Folder(records, grays, np.array([r.label for r in records]), [r.group for r in records],
                  [r.source or modality for r in records])


def split_by_source(folder: Folder) -> dict[str, np.ndarray]:
    """The three-way split done within each source and joined (both sources on every side)."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "tuning": [], "validation": []}
    for source in sorted(set(folder.sources)):
        members = np.array([i for i, s in enumerate(folder.sources) if s == source])
        inner = split_three([folder.groups[i] for i in members], folder.labels[members])
        for name, indices in inner.items():
            parts[name].append(members[indices])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


class Extractor:
    """ImageNet MobileNetV2 alpha 0.35 + global average pooling, in Keras (training side only)."""

    def __init__(self, size: int) -> None:
        import keras

        from training.weights import default_weights_path, validate_weights

        weights = default_weights_path()
        validate_weights(weights)
        base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False,
                                              weights=str(weights))
        inputs = keras.Input((size, size, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)))
        self.model = keras.Model(inputs, pooled)
        self.size = size

    def __call__(self, tensors: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(tensors, batch_size=32, verbose=0), dtype=np.float32)


def extract(extractor: Extractor, grays: list[np.ndarray], method: str, reference: np.ndarray | None) -> np.ndarray:
    out = []
    for start in range(0, len(grays), 128):
        chunk = np.stack([to_model_input(g, extractor.size, method, reference) for g in grays[start:start + 128]])
        out.append(extractor(chunk))
    return np.concatenate(out)


def reference_cdf(grays: list[np.ndarray], size: int) -> np.ndarray:
    """Mean cumulative histogram of the (resized) training images: the 'match' target."""
    cdf: np.ndarray = np.mean([compute_cdf(resize_uint8(g, size)) for g in grays], axis=0)
    return cdf


def evaluate_head(train_x: np.ndarray, train_y: np.ndarray, tune_x: np.ndarray, tune_y: np.ndarray,
                  tests: dict[str, tuple[np.ndarray, np.ndarray]], weight: np.ndarray | None = None) -> dict[str, float]:
    l2, _ = choose_l2(train_x, train_y, tune_x, tune_y)
    head = fit_logistic(train_x, train_y, l2, sample_weight=weight)
    result = {"l2": l2, "tuning_auc": compute_auc(tune_y, head.logits(tune_x))}
    for name, (x, y) in tests.items():
        result[name] = compute_auc(y, head.logits(x))
    return result


def features_for(cache: Path, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    path = cache / f"{key}.npz"
    if path.exists():
        cached: np.ndarray = np.load(path, allow_pickle=False)["x"]
        return cached
    values = make()
    np.savez_compressed(path, x=values)
    return values


def run_ct(folder: Folder, size: int, method: str, copies: int, cache: Path, extractor: Extractor) -> dict[str, float]:
    split = split_three(folder.groups, folder.labels)
    reference = reference_cdf([folder.grays[i] for i in split["train"]], size) if method == "match" else None
    clean = features_for(cache, f"ct_{method}_{size}_clean", lambda: extract(extractor, folder.grays, method, reference))
    foreign_grays = [foreign_look(folder.grays[i], int(i)) for i in split["validation"]]
    foreign = features_for(cache, f"ct_{method}_{size}_foreign",
                           lambda: extract(extractor, foreign_grays, method, reference))
    train_x, train_y = clean[split["train"]], folder.labels[split["train"]]
    if copies:
        rng = np.random.default_rng(SEED)
        augmented = features_for(cache, f"ct_{method}_{size}_aug{copies}", lambda: extract(
            extractor, [vary_look(folder.grays[i], rng, flip=True) for _ in range(copies) for i in split["train"]],
            method, reference))
        train_x = np.concatenate([train_x, augmented])
        train_y = np.concatenate([train_y] + [folder.labels[split["train"]]] * copies)
    val_y = folder.labels[split["validation"]]
    return evaluate_head(train_x, train_y, clean[split["tuning"]], folder.labels[split["tuning"]],
                         {"validation_auc": (clean[split["validation"]], val_y),
                          "validation_foreign_look_auc": (foreign, val_y)})


def standardise_per_source(features: np.ndarray, sources: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each source's features z-scored with that source's own mean and spread (of ``reference``, unlabelled)."""
    out = np.empty_like(features)
    for source in np.unique(sources):
        members = sources == source
        mean = reference[members].mean(axis=0)
        scale = reference[members].std(axis=0) + 1e-6
        out[members] = (features[members] - mean) / scale
    return out


def run_xray(folder: Folder, size: int, method: str, copies: int, cache: Path, extractor: Extractor,
             per_source: bool = False) -> dict[str, float]:
    split = split_by_source(folder)
    reference = reference_cdf([folder.grays[i] for i in split["train"]], size) if method == "match" else None
    clean = features_for(cache, f"xray_{method}_{size}_clean",
                         lambda: extract(extractor, folder.grays, method, reference))
    sources = np.array(folder.sources)
    labels = folder.labels
    augmented = None
    if copies:
        rng = np.random.default_rng(SEED)
        every = np.arange(len(labels))
        augmented = features_for(cache, f"xray_{method}_{size}_aug{copies}", lambda: extract(
            extractor, [vary_look(folder.grays[i], rng) for _ in range(copies) for i in every], method, reference))
    if per_source:
        # statistics of every clean image of a source, labels unused: what a hospital can compute from its archive
        raw_clean = clean
        clean = standardise_per_source(raw_clean, sources, raw_clean)
        if augmented is not None:
            copy_sources = np.tile(sources, copies)
            augmented = standardise_per_source(augmented, copy_sources, np.tile(raw_clean, (copies, 1)))

    def training_set(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = clean[indices], labels[indices]
        if augmented is not None:
            n = len(labels)
            x = np.concatenate([x] + [augmented[c * n + indices] for c in range(copies)])
            y = np.concatenate([y] * (copies + 1))
        return x, y

    result: dict[str, float] = {}
    train_x, train_y = training_set(split["train"])
    tests = {}
    for source, short in ((NIH, "nih"), (JSRT, "jsrt")):
        held = split["validation"][sources[split["validation"]] == source]
        tests[f"validation_auc_{short}"] = (clean[held], labels[held])
    tests["validation_auc"] = (clean[split["validation"]], labels[split["validation"]])
    result.update(evaluate_head(train_x, train_y, clean[split["tuning"]], labels[split["tuning"]], tests))
    for source, other, name in ((NIH, JSRT, "loso_nih_to_jsrt_auc"), (JSRT, NIH, "loso_jsrt_to_nih_auc")):
        members = np.array([i for i in range(len(labels)) if sources[i] == source])
        inner = split_three([folder.groups[i] for i in members], labels[members])
        fit_idx = members[np.concatenate([inner["train"], inner["validation"]])]
        tune_idx = members[inner["tuning"]]
        target = np.flatnonzero(sources == other)
        x, y = training_set(fit_idx)
        result[name] = evaluate_head(x, y, clean[tune_idx], labels[tune_idx],
                                     {"auc": (clean[target], labels[target])})["auc"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=("ct", "xray"), action="append")
    parser.add_argument("--methods", default="stretch,equalize,match")
    parser.add_argument("--sizes", default="224")
    parser.add_argument("--copies", default="0,2", help="augmented copies per training image")
    parser.add_argument("--per-source", default="0", help="X-ray: 0 = raw features, 1 = z-scored per source; e.g. 0,1")
    parser.add_argument("--cache", default="/tmp/lungledger_ablation")
    parser.add_argument("--report", default="ablation.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    per_source_choices = [bool(int(value)) for value in args.per_source.split(",")]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    report = Path(args.report)
    if report.exists():
        rows = json.loads(report.read_text())
    done = {(r["modality"], r["method"], r["size"], r["copies"], bool(r.get("per_source", False))) for r in rows}
    for modality in args.modality or ["ct", "xray"]:
        folder = read_folder(modality)
        for size in [int(s) for s in args.sizes.split(",")]:
            extractor = Extractor(size)
            for method in args.methods.split(","):
                for copies in [int(c) for c in args.copies.split(",")]:
                    for per_source in per_source_choices if modality == "xray" else [False]:
                        if (modality, method, size, copies, per_source) in done:
                            continue
                        started = time.monotonic()
                        if modality == "ct":
                            result = run_ct(folder, size, method, copies, cache, extractor)
                        else:
                            result = run_xray(folder, size, method, copies, cache, extractor, per_source)
                        row = {"modality": modality, "method": method, "size": size, "copies": copies,
                               "per_source": per_source, **result, "seconds": round(time.monotonic() - started, 1)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        report.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
