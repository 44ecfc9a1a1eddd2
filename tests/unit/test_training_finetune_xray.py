"""The fine-tuning experiment's protocol on the real X-ray folder: no patient on two sides, LOSO tests the other source."""

from __future__ import annotations

import numpy as np
import pytest

from training.ablation import JSRT, NIH, Folder, read_folder
from training.finetune_xray import SIZE, main, plan_runs, squares


@pytest.fixture(scope="module")
def folder() -> Folder:
    return read_folder("xray", limit=12)


def test_runs_keep_every_patient_on_one_side_and_leave_one_source_out(folder: Folder) -> None:
    sources = np.array(folder.sources)
    groups = np.array(folder.groups)
    runs = {name: (fit, tune, tests) for name, fit, tune, tests in plan_runs(folder, ["A", "B", "C"])}
    assert set(runs) == {"A_both", "B_nih_to_jsrt", "C_jsrt_to_nih"}
    for fit, tune, tests in runs.values():
        sides = [fit, tune, *tests.values()]
        assert not set(groups[fit]) & set(groups[tune])
        for test in tests.values():
            assert not set(groups[test]) & (set(groups[fit]) | set(groups[tune]))
        assert all(len(side) for side in sides)
    fit, tune, tests = runs["A_both"]
    assert set(sources[fit]) == set(sources[tune]) == {NIH, JSRT}
    assert set(sources[tests["heldout_nih"]]) == {NIH} and set(sources[tests["heldout_jsrt"]]) == {JSRT}
    for name, trained, other in (("B_nih_to_jsrt", NIH, JSRT), ("C_jsrt_to_nih", JSRT, NIH)):
        fit, tune, tests = runs[name]
        assert set(sources[fit]) == set(sources[tune]) == {trained}
        assert sorted(tests["loso"]) == sorted(np.flatnonzero(sources == other).tolist())


def test_inputs_are_the_node_stretched_grey_squares(folder: Folder) -> None:
    x = squares(folder.grays[:3])
    assert x.shape == (3, SIZE, SIZE, 1) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255 and x.max() - x.min() > 100


def test_unknown_run_names_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--runs", "A,D"])
