"""Evaluate a shipped LiteRT model on any labelled folder (no TensorFlow).

    python -m training.evaluate --modality ct --data DIR [--model PATH] [--json]

Prints n, accuracy, sensitivity and specificity at the card's threshold with
Wilson 95 % intervals, and the ROC AUC with a stratified bootstrap 95 %
interval. With ``--json`` the last line is one JSON object. ``--split
validation`` restricts a training folder to the model's held-out split (the
card lists its files); on any other folder use the default ``all``.

``--by-source`` adds the same figures per ``source_dataset`` of ``labels.csv``
(e.g. NIH ChestX-ray14 and JSRT). For X-ray, the benign nodules of
``<shared>/data/xray_benign_nodule`` (or ``--benign DIR``) are scored too: how
many are called cancer at the threshold, and the AUC of benign nodules against
the folder's normal images (0.5 = the model does not tell them apart).
``--gate`` runs the model's learned input gate on every image: accepted,
flagged out-of-distribution, or refused (with the reason code).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.preprocessing import DEFAULT_HARMONISATION
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
    parser.add_argument("--by-source", action="store_true", help="also report per source_dataset of labels.csv")
    parser.add_argument("--benign", help="folder of benign-nodule images to score (default for xray: "
                                         "<shared>/data/xray_benign_nodule when present; 'none' to skip)")
    parser.add_argument("--gate", action="store_true", help="run the learned input gate on every image")
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


def evaluate(data: LoadedData, model_path: Path, threshold: float, by_source: bool = False,
             gate: Any = None) -> dict[str, Any]:
    """Metrics at ``threshold``, the other_findings=0 subset, per source and the gate's decisions on request."""
    outputs = run_tflite(model_path, data.images)
    scores = outputs.probability
    result: dict[str, Any] = summarise(data.labels, scores, threshold)
    if any(record.other_findings is not None for record in data.records):
        subset = np.array([r.label == 0 or r.other_findings == 0 for r in data.records])
        result["no_other_findings"] = summarise(data.labels[subset], scores[subset], threshold)
    if by_source:
        sources = np.array([r.source or "(no source_dataset)" for r in data.records])
        result["by_source"] = {source: summarise(data.labels[sources == source], scores[sources == source],
                                                 threshold) for source in sorted(set(sources))}
    if gate is not None:
        result["gate"] = run_gate(gate, outputs.features.mean(axis=(1, 2)), [r.file for r in data.records])
    result["normal_scores"] = scores[data.labels == 0]
    return result


def run_gate(gate: Any, pooled: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Counts of accepted / flagged / refused images (with codes), and the refused files."""
    from diagnostics.errors import DiagnosisError

    accepted, flagged, refused = 0, 0, {}
    for name, row in zip(names, pooled, strict=True):
        try:
            decision = gate.check(row)
        except DiagnosisError as error:
            refused[name] = error.code
            continue
        accepted += 1
        flagged += int(decision.out_of_distribution)
    return {"n": len(names), "accepted": accepted, "flagged_out_of_distribution": flagged,
            "refused": len(refused), "refused_files": refused}


def score_benign(folder: Path, modality: str, model_path: Path, size: int, threshold: float,
                 normal_scores: np.ndarray, harmonisation: str = DEFAULT_HARMONISATION,
                 reference_cdf: list[float] | None = None) -> dict[str, Any]:
    """Benign nodules (no label folders): called cancer at the threshold, AUC against the normal images."""
    from diagnostics.imaging import decode_image
    from diagnostics.preprocessing import to_model_input
    from training.metrics import compute_auc

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    images = np.stack([to_model_input(decode_image(p.read_bytes(), modality).pixels, size, harmonisation,
                                      reference_cdf) for p in files])
    scores = run_tflite(model_path, images).probability
    labels = np.concatenate([np.ones(len(scores)), np.zeros(len(normal_scores))])
    return {"n": len(files), "called_cancer": int(np.sum(scores >= threshold)),
            "mean_probability": float(np.mean(scores)),
            "auc_benign_vs_normal": compute_auc(labels, np.concatenate([scores, normal_scores]))}


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
    harmonisation = str((card.get("hyperparameters") or {}).get("harmonisation", DEFAULT_HARMONISATION))
    reference_cdf = card.get("reference_cdf")  # the training images' mean CDF, for 'match'
    data = select_split(load_data(data_dir, args.modality, int(card["input_size"]), list_records(data_dir),
                                  harmonisation, reference_cdf), card, args.split)
    if args.split == "all" and data.digest == card.get("data_digest"):
        print("warning: this is the model's training folder; use --split validation for held-out figures", file=sys.stderr)
    if args.perturb != "none":
        data = LoadedData(data.records, apply_perturbation(data.images, args.perturb), data.labels, data.digest)
    gate = None
    if args.gate:
        from diagnostics.gate import load_gate

        if not card.get("gate"):
            raise SystemExit(f"{model_path}: its card names no input gate")
        gate = load_gate(model_path.parent, card["modality"], len(card["head"]["weights"]), card["gate"]["sha256"])
    result = evaluate(data, model_path, float(card["threshold"]), args.by_source, gate)
    normal_scores = result.pop("normal_scores")
    benign_dir = None if args.benign == "none" else Path(args.benign) if args.benign else (
        default_data_dir("xray_benign_nodule") if args.modality == "xray" else None)
    if benign_dir is not None and benign_dir.is_dir():
        result["benign_nodules"] = score_benign(benign_dir, args.modality, model_path, int(card["input_size"]),
                                                float(card["threshold"]), normal_scores, harmonisation,
                                                reference_cdf)
    print(f"model {card.get('name')} {card.get('version')} id {card['model_id'][:16]} threshold {card['threshold']:.4f}")
    print(format_report(f"{data_dir} [{args.split}, perturbation {args.perturb}]", result))
    if "no_other_findings" in result:
        print(format_report("cancer without other findings vs all normal", result["no_other_findings"]))
    for source, figures in result.get("by_source", {}).items():
        print(format_report(f"source {source}", figures))
    if "benign_nodules" in result:
        benign = result["benign_nodules"]
        print(f"benign nodules ({benign_dir}): n={benign['n']}, called cancer {benign['called_cancer']}, mean "
              f"probability {benign['mean_probability']:.3f}, AUC benign vs this folder's normals "
              f"{benign['auc_benign_vs_normal']:.3f}")
    if "gate" in result:
        g = result["gate"]
        print(f"input gate: {g['accepted']}/{g['n']} accepted ({g['flagged_out_of_distribution']} flagged "
              f"out-of-distribution), {g['refused']} refused {sorted(set(g['refused_files'].values()))}")
    if args.json:
        summary = {"model_id": card["model_id"], "split": args.split, "perturbation": args.perturb, **result}
        print(json.dumps(replace_nan(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
