"""Leave-one-source-out of the committed X-ray model, recomputed from its .tflite: runs without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.loso import compute_loso

REPO = Path(__file__).resolve().parents[2]


def test_small_run_reports_both_directions_on_the_other_source_without_tensorflow() -> None:
    code = ("import sys, json; sys.modules['tensorflow'] = None; sys.modules['keras'] = None;"
            "from training.loso import main; sys.exit(main(['--limit', '10', '--json']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results) == {"nih_to_jsrt", "jsrt_to_nih"}
    for result in results.values():
        assert result["trained_on"] != result["tested_on"]
        assert result["n"] == 20 and result["cancer"] == 10  # every image of the other source (10 per class)
        assert 0.0 <= result["auc"] <= 1.0
        assert result["card_auc"] is not None


def test_a_ct_model_is_refused_with_a_reason() -> None:
    with pytest.raises(SystemExit, match="two-source X-ray model"):
        compute_loso(REPO / "models" / "ct", limit=2)
