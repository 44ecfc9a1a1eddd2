"""Evaluate a shipped LiteRT model on any labelled folder (no TensorFlow).

    python -m training.evaluate --modality ct --data DIR [--model PATH] [--json]

Prints n, accuracy, sensitivity and specificity at the card's threshold with
Wilson 95 % intervals, and the ROC AUC with a stratified bootstrap 95 %
interval. With ``--json`` the last line is one JSON object. ``--split
validation`` restricts a training folder to the model's held-out split (the
card lists its files); on any other folder use the default ``all``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.card import CARD_FILE, MODEL_FILE, read_card, replace_nan
from training.data import REPO_ROOT, LoadedData, default_data_dir, list_records, load_data, select
from training.litert import run_tflite
from training.metrics import summarise
from training.perturb import PERTURBATIONS, apply_perturbation

SPLITS = ("all", "train", "tuning", "validation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=("ct", "xray"), required=True)
    parser.add_argument("--data", help="folder with cancer/ and normal/ (default ../shared/data/<modality>)")
    parser.add_argument("--model", help="model.tflite (default models/<modality>/model.tflite); card.json beside it")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="restrict to one side of the model's split (only meaningful on its training folder)")
    parser.add_argument("--perturb", choices=PERTURBATIONS, default="none",
                        help="stress test: blur or add noise to every image before inference")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser.parse_args(argv)


def select_split(data: LoadedData, card: dict[str, Any], split: str) -> LoadedData:
    """The images of one split side named in the card (all images for 'all')."""
    if split == "all":
        return data
    if data.digest != card.get("data_digest"):
        raise SystemExit(f"--split {split} needs the folder the model was trained on (data digest differs)")
    wanted = set(card["split"]["files"][split])
    return select(data, np.array([i for i, r in enumerate(data.records) if r.file in wanted], dtype=np.int64))


def evaluate(data: LoadedData, model_path: Path, threshold: float) -> dict[str, Any]:
    """Metrics at ``threshold``, plus the other_findings=0 subset when the folder records it."""
    scores = run_tflite(model_path, data.images).probability
    result: dict[str, Any] = summarise(data.labels, scores, threshold)
    if any(record.other_findings is not None for record in data.records):
        subset = np.array([r.label == 0 or r.other_findings == 0 for r in data.records])
        result["no_other_findings"] = summarise(data.labels[subset], scores[subset], threshold)
    return result


def format_report(title: str, result: dict[str, Any]) -> str:
    """Human-readable block of metrics."""
    lines = [f"{title}: n={result['n']} ({result['positives']} cancer, {result['negatives']} normal)"]
    for name in ("accuracy", "sensitivity", "specificity"):
        lines.append(f"  {name:<12} {result[name]:.3f}  [{result[f'{name}_ci_low']:.3f}, "
                     f"{result[f'{name}_ci_high']:.3f}] (Wilson 95%)")
    lines.append(f"  {'ROC AUC':<12} {result['auc']:.3f}  [{result['auc_ci_low']:.3f}, "
                 f"{result['auc_ci_high']:.3f}] (bootstrap 95%)")
    lines.append(f"  confusion    tp={result['tp']} fp={result['fp']} tn={result['tn']} fn={result['fn']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Load card and images, run LiteRT, print the metrics."""
    args = parse_args(argv)
    model_path = Path(args.model) if args.model else REPO_ROOT / "models" / args.modality / MODEL_FILE
    card = read_card(model_path.parent / CARD_FILE)
    if card["modality"] != args.modality:
        raise SystemExit(f"{model_path} is a {card['modality']} model, not {args.modality}")
    data_dir = Path(args.data) if args.data else default_data_dir(args.modality)
    data = select_split(load_data(data_dir, args.modality, int(card["input_size"]), list_records(data_dir)), card, args.split)
    if args.split == "all" and data.digest == card.get("data_digest"):
        print("warning: this is the model's training folder; use --split validation for held-out figures", file=sys.stderr)
    if args.perturb != "none":
        data = LoadedData(data.records, apply_perturbation(data.images, args.perturb), data.labels, data.digest)
    result = evaluate(data, model_path, float(card["threshold"]))
    print(f"model {card.get('name')} {card.get('version')} id {card['model_id'][:16]} threshold {card['threshold']:.4f}")
    print(format_report(f"{data_dir} [{args.split}, perturbation {args.perturb}]", result))
    if "no_other_findings" in result:
        print(format_report("cancer without other findings vs all normal", result["no_other_findings"]))
    if args.json:
        summary = {"model_id": card["model_id"], "split": args.split, "perturbation": args.perturb, **result}
        print(json.dumps(replace_nan(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
