"""Benchmark: a 300-slice CT series through the hospital pipeline against the bare model rate, same run.

Measured, interleaved in one process on the same loaded model:

1. ``bare``: the CT model's LiteRT invoke alone on pre-made input tensors, in the
   plug-in's own batch size (the floor: nothing but inference);
2. ``series``: ``node.hospital.pipeline.diagnose_series`` on the 300 received files
   (read, lung check in HU, plug-in ``diagnose_async`` per lung slice with its
   decoding, plausibility check, batched inference, CAM heatmap, fusion; pick of
   the top slice);
3. ``receive``: the header checks and durable (fsynced) inbox write of each instance,
   as the DICOM listener and POST /studies do before acknowledging;
4. ``stow`` (``--stow``): the whole path through a running node: POST /api/v1/studies
   with 300 DICOM parts -> every check, diagnosis, signed record committed.

The series is built from the four real CT files of ../shared/data/dicom with new
UIDs (tests/dicom_builders.py). Prints JSON; see BENCHMARKS.md.

Usage: python bench/bench_series.py [--slices 300] [--rounds 2] [--stow]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diagnostics import load_plugin
from node.hospital.instances import read_instance_info
from node.hospital.pipeline import diagnose_series
from node.hospital.series import ReceivedInstance, SeriesAssembler
from node.hospital.service import write_durably
from tests.dicom_builders import build_series, real_dicom_files

REPO_ROOT = Path(__file__).resolve().parent.parent

LUNG_MIN_FRACTION = 0.03


def bench_bare(plugin: Any, slices: int) -> float:
    """Slices per second of the model invoke alone, in the plug-in's batch size."""
    model = plugin.models["ct"]
    tensors = [plugin.prepare("ct", path.read_bytes()).tensor for path in real_dicom_files()]
    batch_size = max(1, model.max_batch)
    batch = np.stack([tensors[i % len(tensors)] for i in range(batch_size)])
    model.predict(batch)  # warm-up
    started = time.perf_counter()
    done = 0
    while done < slices:
        count = min(batch_size, slices - done)
        model.predict(batch[:count])
        done += count
    return slices / (time.perf_counter() - started)


def receive_all(instances: list[bytes], folder: Path) -> tuple[list[ReceivedInstance], float]:
    started = time.perf_counter()
    received = []
    for data in instances:
        info = read_instance_info(data, 32 * 1024 * 1024)
        path = folder / f"{uuid.uuid4().hex}.dcm"
        write_durably(path, data)
        received.append(ReceivedInstance(info, path))
    return received, time.perf_counter() - started


async def bench_series(plugin: Any, received: list[ReceivedInstance]) -> tuple[float, dict[str, Any]]:
    assembler = SeriesAssembler(quiet_seconds=1.0, max_instances=len(received))
    for item in received:
        assembler.add(item, time.monotonic())
    (series,) = assembler.take_complete(time.monotonic(), flush=True)
    started = time.perf_counter()
    diagnosis = await diagnose_series(plugin, series, LUNG_MIN_FRACTION)
    elapsed = time.perf_counter() - started
    summary = {key: diagnosis.result["series"][key] for key in ("slices_with_lung", "slices_diagnosed",
                                                                 "slices_refused", "top_slice")}
    return elapsed, summary


async def bench_stow(instances: list[bytes], root: Path) -> dict[str, Any]:
    import aiohttp

    from tests.support.api import make_node_dir, running_node

    section = {"max_series_instances": len(instances)}
    async with running_node(make_node_dir(root), plugin="mobilenetv2", hospital=section) as node:
        writer = aiohttp.MultipartWriter("related", boundary=uuid.uuid4().hex)
        for data in instances:
            writer.append(data, {"Content-Type": "application/dicom"})
        headers = {**node.auth, "Content-Type": f'multipart/related; type="application/dicom"; '
                                                f'boundary={writer.boundary}'}
        started = time.perf_counter()
        async with node.session.post(f"{node.url}/api/v1/studies", data=writer, headers=headers) as response:
            body = await response.json(content_type=None)
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"POST /studies failed: {response.status} {body}")
    return {"seconds": round(elapsed, 2), "slices_per_s": round(len(instances) / elapsed, 1),
            "status": body["series"][0]["status"]}


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plugin: Any = load_plugin("mobilenetv2", {})
    instances = build_series(args.slices, patient_id="LL-BENCH-0001")
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_number in range(args.rounds):
                bare = bench_bare(plugin, args.slices)
                target = Path(folder) / f"round{round_number}"
                received, receive_s = await asyncio.to_thread(receive_all, instances, target)
                series_s, summary = await bench_series(plugin, received)
                rounds.append({"bare_slices_per_s": round(bare, 1), "receive_s": round(receive_s, 2),
                               "receive_slices_per_s": round(args.slices / receive_s, 1),
                               "series_s": round(series_s, 2), "series_slices_per_s": round(args.slices / series_s, 1),
                               "ratio_series_to_bare": round(args.slices / series_s / bare, 3), **summary})
            stow = await bench_stow(instances, Path(folder) / "stow") if args.stow else None
    finally:
        plugin.close()
    return {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "load_avg": os.getloadavg()},
            "slices": args.slices, "max_batch": plugin.models["ct"].max_batch, "rounds": rounds, "stow": stow,
            "peak_rss_mib": round(peak_rss_mib(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stow", action="store_true", help="also time POST /api/v1/studies on a running node")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
