"""Leave-one-source-out figures of a shipped X-ray model, recomputed from its own ``.tflite``.

``python -m training.loso`` (no TensorFlow; LiteRT only)

The shipped recipe (``training.train_head``) trains its head on frozen backbone
features. Leaving a source out therefore means refitting only the head: for each
source, the recipe's head (L2 logistic, penalty chosen on that source's tuning
split, the card's number of look copies of the fit images) is fitted on the
committed model's pooled features of one source's train + validation split and
scored on every image of the other source. ``train_head`` writes the same
figures into the card's ``generalisation`` when it trains; this recomputes them
from the committed model and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.ablation import JSRT, NIH, read_folder
from training.card import CARD_FILE, MODEL_FILE
from training.data import REPO_ROOT
from training.metrics import compute_auc
from training.split import split_three
from training.train_head import SEED, augmented_grays, fit_head, run_tflite_all

DIRECTIONS = ((NIH, JSRT, "nih_to_jsrt"), (JSRT, NIH, "jsrt_to_nih"))


def compute_loso(model_dir: Path, limit: int = 0) -> dict[str, dict[str, Any]]:
    """Both directions' AUC (with n and the card's recorded figure) for the X-ray model in ``model_dir``."""
    card = json.loads((model_dir / CARD_FILE).read_text(encoding="utf-8"))
    if card.get("modality") != "xray":
        raise SystemExit(f"{model_dir / CARD_FILE} is a {card.get('modality')!r} model; "
                         "leave-one-source-out needs the two-source X-ray model")
    copies = int(card["hyperparameters"]["look_copies_per_training_image"])
    model_path, size = model_dir / MODEL_FILE, int(card["input_size"])
    folder = read_folder("xray", limit)
    _, clean = run_tflite_all(model_path, folder.grays, size)
    sources = np.array(folder.sources)
    results: dict[str, dict[str, Any]] = {}
    for source, other, name in DIRECTIONS:
        members = np.flatnonzero(sources == source)
        inner = split_three([folder.groups[i] for i in members], folder.labels[members])
        fit_idx = members[np.concatenate([inner["train"], inner["validation"]])]
        tune_idx = members[inner["tuning"]]
        _, augmented = run_tflite_all(model_path, augmented_grays(folder, fit_idx, copies, False, SEED + 7), size)
        x = np.concatenate([clean[fit_idx], augmented])
        y = np.concatenate([folder.labels[fit_idx]] * (copies + 1))
        fitted = fit_head(x, y, clean[tune_idx], folder.labels[tune_idx])
        target = np.flatnonzero(sources == other)
        recorded = card.get("generalisation", {}).get(f"loso_{name}", {}).get("auc")
        results[name] = {"trained_on": source, "tested_on": other, "n": int(len(target)),
                         "cancer": int(folder.labels[target].sum()), "l2": fitted["l2"],
                         "auc": compute_auc(folder.labels[target], fitted["head"].logits(clean[target])),
                         "card_auc": recorded}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "xray")
    parser.add_argument("--limit", type=int, default=0, help="only this many images per source and class (tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    results = compute_loso(args.model_dir, args.limit)
    for result in results.values():
        recorded = result["card_auc"]
        print(f"{result['trained_on']} -> {result['tested_on']}: n={result['n']} ({result['cancer']} cancer), "
              f"head L2 {result['l2']}, AUC {result['auc']:.3f}"
              + (f" (card: {recorded:.3f})" if recorded is not None else ""))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
