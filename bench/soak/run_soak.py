"""Soak run (needs root for network namespaces): diagnoses + random faults, then convergence.

    sudo .venv/bin/python bench/soak/run_soak.py --minutes 10 --hosts 5

Prints the report as JSON: records acknowledged, lost (goal 0), duplicated
(goal 0), reorgs and their depths, time to converge after the last fault.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from harness.soak import run_soak  # noqa: E402


def load_images(data_dir: Path, count: int) -> list[bytes]:
    files = sorted((data_dir / "ct" / "cancer").glob("*.png"))[:count] + sorted((data_dir / "ct" / "normal").glob("*.png"))[:count]
    if not files:
        raise SystemExit(f"no CT images under {data_dir}/ct")
    return [path.read_bytes() for path in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--submitters", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        report = run_soak(Path(work), load_images(args.data, 4), args.hosts, args.minutes * 60, args.submitters, args.seed)
    print(json.dumps(report.as_dict(), indent=2))
    summary = report.as_dict()
    depths = summary.pop("reorg_depths")
    summary.pop("faults")
    print("summary:", json.dumps(summary), "max reorg depth:", max(depths, default=0))


if __name__ == "__main__":
    main()
