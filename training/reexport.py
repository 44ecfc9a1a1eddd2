"""Re-export a shipped model so that it takes the harmonised grey square as one channel (card input [S, S, 1]).

``python -m training.reexport --modality ct`` (artefacts in ``models/<modality>`` rewritten in place)

The weights are not retrained: the recipe's current graph (``training.train_head.build_models``:
grey [S, S, 1] -> scale -> frozen backbone whose first convolution is summed over its colour
channels -> head) gets the previous model's weights (``fold_colour_channels``), is exported to
LiteRT, and is compared with the previous ``.tflite`` on every image of the training folder (the
same harmonised squares given to both). The card keeps its metrics (they were computed with the
previous file) and records the largest difference, the previous model's identity and the new
version. Refused when any probability differs by more than ``MATCH_TOLERANCE``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training import card as card_module
from training.data import REPO_ROOT

MATCH_TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=("ct", "xray"), required=True)
    parser.add_argument("--model-dir", help="default: models/<modality>")
    parser.add_argument("--version", default="2.0.1")
    parser.add_argument("--limit", type=int, default=0, help="compare on this many images per class only (tests)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from diagnostics.preprocessing import to_model_square
    from training.ablation import read_folder
    from training.export import export_tflite
    from training.litert import run_tflite
    from training.train_head import build_models, fold_colour_channels

    model_dir = Path(args.model_dir) if args.model_dir else REPO_ROOT / "models" / args.modality
    card: dict[str, Any] = card_module.read_card(model_dir / card_module.CARD_FILE)
    previous_tflite = model_dir / card_module.MODEL_FILE
    if card_module.compute_model_id(previous_tflite) != card["model_id"]:
        raise SystemExit(f"{previous_tflite} does not match its card's model_id; refusing to re-export")
    if ((card.get("input") or {}).get("shape") or [0, 0, 0, 3])[3] == 1:
        print(f"{model_dir} already takes one grey channel; nothing to do")
        return 0
    size = int(card["input_size"])
    harmonisation = str((card.get("hyperparameters") or {}).get("harmonisation", "stretch"))
    previous = keras.saving.load_model(model_dir / card_module.KERAS_FILE)
    exported, _, _ = build_models(size)
    exported.set_weights(fold_colour_channels(previous.get_weights(), exported.get_weights()))
    folder = read_folder(args.modality, args.limit)
    squares = np.stack([to_model_square(gray, size, harmonisation) for gray in folder.grays])[..., None]
    squares = squares.astype(np.float32)
    with tempfile.TemporaryDirectory() as workdir:
        candidate = Path(workdir) / card_module.MODEL_FILE
        outputs = export_tflite(exported, candidate)
        before = run_tflite(previous_tflite, squares)
        after = run_tflite(candidate, squares)
        keras_probability = np.asarray(exported.predict(squares, batch_size=32, verbose=0)["probability"])[:, 0]
        differences = {
            "probability_vs_previous_tflite": float(np.max(np.abs(before.probability - after.probability))),
            "features_vs_previous_tflite": float(np.max(np.abs(before.features - after.features))),
            "probability_vs_keras": float(np.max(np.abs(keras_probability - after.probability))),
        }
        print(f"largest differences on {len(squares)} images: {differences}", flush=True)
        if not max(differences["probability_vs_previous_tflite"], differences["probability_vs_keras"]) \
                <= MATCH_TOLERANCE:
            raise SystemExit(f"re-exported model differs by more than {MATCH_TOLERANCE}; nothing written")
        previous_identity = {"model_id": card["model_id"], "version": card.get("version")}
        (model_dir / card_module.MODEL_FILE).write_bytes(candidate.read_bytes())
    card.update({
        "model_id": card_module.compute_model_id(model_dir / card_module.MODEL_FILE),
        "version": args.version,
        "input": card_module.describe_input(size),
        "outputs": outputs,
        "preprocessing": card_module.PREPROCESSING,
        "reexport": {"from": previous_identity,
                     "weights": "unchanged, except the first convolution summed over its three colour channels",
                     "why": "the model takes the harmonised grey square as one channel: no copy to three channels "
                            "in Python and a 3x smaller first convolution (serving hot path, issue 10 section 5)",
                     "compared_on": f"{len(squares)} images of the training folder",
                     "max_abs_difference": differences, "tolerance": MATCH_TOLERANCE,
                     "metrics": "unchanged: computed with the previous file, which this one reproduces "
                                "within the differences above"},
    })
    card_module.write_card(model_dir / card_module.CARD_FILE, card)
    exported.save(model_dir / card_module.KERAS_FILE)
    print(f"{model_dir}: version {args.version}, model_id {card['model_id'][:16]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
