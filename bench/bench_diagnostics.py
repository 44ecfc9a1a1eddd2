"""Benchmark of the diagnostic plug-in against a bare LiteRT invoke of the same model.

1. Single image, end to end in the plug-in (decode, checks, 8-bit preprocess,
   infer, learned input gate, CAM grid + heatmap PNG, fusion) against a bare ``invoke`` of the same model on the
   same tensor, interleaved in the same run: p50, p99 and their ratios, and
   where the extra time goes (per stage).
2. Throughput with 8 concurrent ``diagnose_async`` requests (batching on, and
   off with ``max_batch=1``) against the bare batched invoke of 8 tensors and
   8 bare single invokes.

Usage: python bench/bench_diagnostics.py [--modality ct] [--repeats 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from diagnostics import RiskFactors, load_plugin  # noqa: E402
from diagnostics.heatmap import compute_cam, render_heatmap_png  # noqa: E402
from diagnostics.imaging import decode_image  # noqa: E402
from diagnostics.plausibility import compute_histogram, validate_chest_image  # noqa: E402
from diagnostics.preprocessing import resize_image, to_uint8  # noqa: E402

RISK = RiskFactors(age=64, smoking="former", family_history=False)


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def summarise(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "mean_ms": statistics.fmean(samples) * 1000.0}


def time_call(function: Callable[[], Any], cpu_seconds: list[float] | None = None) -> float:
    """Wall seconds of one call; its process CPU seconds are appended to ``cpu_seconds`` when given."""
    cpu_start = time.process_time()
    start = time.perf_counter()
    function()
    elapsed = time.perf_counter() - start
    if cpu_seconds is not None:
        cpu_seconds.append(time.process_time() - cpu_start)
    return elapsed


class BareModel:
    """The exported model with nothing around it: set_tensor, invoke, get_tensor."""

    def __init__(self, model_path: Path, batch: int, size: int, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        detail = self.interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        if batch != 1:
            self.interpreter.resize_tensor_input(self.input_index, [batch, size, size, int(detail["shape"][3])])
        self.interpreter.allocate_tensors()
        self.output_indices = [detail["index"] for detail in self.interpreter.get_output_details()]

    def run(self, tensor: np.ndarray) -> None:
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        for index in self.output_indices:
            self.interpreter.get_tensor(index)


def bench_single(plugin: Any, bare: BareModel, data: bytes, modality: str, repeats: int,
                 warmup: int) -> dict[str, Any]:
    model = plugin.models[modality]
    tensor = make_tensor(model, decode_image(data, modality).pixels)[None]
    for _ in range(warmup):
        bare.run(tensor)
        plugin.diagnose({modality: data}, RISK)
    bare_times, plugin_times, bare_cpu, plugin_cpu = [], [], [], []
    load_before = os.getloadavg()
    for _ in range(repeats):  # interleaved, so both see the same machine load
        bare_times.append(time_call(lambda: bare.run(tensor), bare_cpu))
        plugin_times.append(time_call(lambda: plugin.diagnose({modality: data}, RISK), plugin_cpu))
    bare_summary, plugin_summary = summarise(bare_times), summarise(plugin_times)
    return {"load_average_1min": [load_before[0], os.getloadavg()[0]],
            "bare_invoke": bare_summary, "plugin_end_to_end": plugin_summary,
            "ratio_p50": plugin_summary["p50_ms"] / bare_summary["p50_ms"],
            "ratio_p99": plugin_summary["p99_ms"] / bare_summary["p99_ms"],
            # CPU time of the whole process (LiteRT's worker threads included): what the load cannot inflate
            "cpu_ms_p50": {"bare_invoke": percentile(bare_cpu, 50), "plugin_end_to_end": percentile(plugin_cpu, 50)},
            "cpu_ratio_p50": percentile(plugin_cpu, 50) / percentile(bare_cpu, 50),
            **with_floor(bench_stages(plugin, data, modality, repeats), bare_summary["p50_ms"])}


def with_floor(stages: dict[str, float], bare_p50_ms: float) -> dict[str, Any]:
    """The stages, and the floor of the ratio: the invoke plus only what no diagnosis of this file can skip
    (decoding the PNG and resizing it to the model's input, both Pillow C code), every other step free."""
    floor_ms = bare_p50_ms + stages["decode"] + stages["resize"]
    return {"stages": stages, "floor_ms_p50": floor_ms, "floor_ratio_p50": floor_ms / bare_p50_ms}


def make_tensor(model: Any, pixels: np.ndarray) -> np.ndarray:
    """What the plug-in's prepare() builds: 8-bit, resized, harmonised, as the model's input."""
    return model.prepare_input(to_uint8(pixels))


def bench_stages(plugin: Any, data: bytes, modality: str, repeats: int) -> dict[str, float]:
    """Median time of each stage of one diagnosis, in ms."""
    model = plugin.models[modality]
    pixels = decode_image(data, modality).pixels
    small = to_uint8(pixels)
    tensor = make_tensor(model, pixels)
    _, features = model.predict(tensor[None])
    cam = compute_cam(features[0], model.card.head_weights, model.card.head_bias)
    stages = {
        "decode": lambda: decode_image(data, modality),
        "to_uint8+plausibility": lambda: validate_chest_image(to_uint8(pixels), modality,
                                                              compute_histogram(to_uint8(pixels))),
        "resize": lambda: resize_image(small, model.input_size),
        "resize+harmonise+input": lambda: model.prepare_input(small),
        "infer": lambda: model.predict(tensor[None]),
        "gate": (lambda: model.gate.check(features[0].mean(axis=(0, 1)))) if model.gate else (lambda: None),
        "cam+heatmap_png": lambda: render_heatmap_png(compute_cam(features[0], model.card.head_weights,
                                                                  model.card.head_bias), *pixels.shape[::-1],
                                                      max(cam.shape)),
    }
    return {name: percentile([time_call(function) for _ in range(max(20, repeats // 4))], 50)
            for name, function in stages.items()}


async def run_concurrent(plugin: Any, images: list[bytes], modality: str, rounds: int) -> tuple[float, list[int]]:
    for _ in range(2):  # warm-up: thread pool
        await asyncio.gather(*(plugin.diagnose_async({modality: data}, RISK) for data in images))
    batcher = plugin._get_batchers(asyncio.get_running_loop())[modality]
    batcher.batch_sizes.clear()
    start = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(plugin.diagnose_async({modality: data}, RISK) for data in images))
    return len(images) * rounds / (time.perf_counter() - start), list(batcher.batch_sizes)


def bench_throughput(options: dict[str, Any], images: list[bytes], modality: str, rounds: int,
                     num_threads: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, max_batch in (("plugin_async_batched", 8), ("plugin_async_unbatched", 1),
                             ("plugin_async_auto", "auto")):
        plugin = load_plugin("mobilenetv2", {**options, "max_batch": max_batch})
        rate, sizes = asyncio.run(run_concurrent(plugin, images, modality, rounds))
        results[label] = rate
        results[f"{label}_batches"] = {size: sizes.count(size) for size in sorted(set(sizes))}
        if max_batch == "auto":
            results["auto_choice"] = {"max_batch": plugin.models[modality].max_batch,
                                      **plugin.models[modality].batching_measurement}
        plugin.close()
    size = json.loads((Path(options["models_dir"]) / modality / "card.json").read_text())["input_size"]
    probe = load_plugin("mobilenetv2", {**options, "max_batch": 1})
    tensors = np.stack([make_tensor(probe.models[modality], decode_image(data, modality).pixels) for data in images])
    probe.close()
    model_path = Path(options["models_dir"]) / modality / "model.tflite"
    batched, single = BareModel(model_path, len(images), size, num_threads), BareModel(model_path, 1, size,
                                                                                        num_threads)
    for _ in range(2):
        batched.run(tensors)
    start = time.perf_counter()
    for _ in range(rounds):
        batched.run(tensors)
    results["bare_batched_invoke"] = len(images) * rounds / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        for tensor in tensors:
            single.run(tensor[None])
    results["bare_single_invokes"] = len(images) * rounds / (time.perf_counter() - start)
    results["ratio_batched_plugin_to_bare_batched"] = (results["plugin_async_batched"]
                                                       / results["bare_batched_invoke"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--modality", choices=("ct", "xray"), default="ct")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--single-only", action="store_true", help="skip the throughput part")
    args = parser.parse_args()

    num_threads = os.cpu_count() or 1
    options = {"models_dir": str(args.models_dir), "modalities": [args.modality], "num_threads": num_threads}
    paths = sorted((args.data_dir / args.modality).glob("*/*.png"))
    images = [paths[i * len(paths) // args.concurrency].read_bytes() for i in range(args.concurrency)]
    plugin = load_plugin("mobilenetv2", options)
    card = plugin.models[args.modality].card
    bare = BareModel(args.models_dir / args.modality / "model.tflite", 1, card.input_size, num_threads)
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "model": {"name": card.name, "version": card.version, "sha256": card.model_id,
                  "input_size": card.input_size, "num_threads": num_threads},
        "image": {"file": paths[0].name, "bytes": len(images[0])},
        "single": bench_single(plugin, bare, images[0], args.modality, args.repeats, args.warmup),
    }
    plugin.close()
    if not args.single_only:
        results["throughput_images_per_s"] = bench_throughput(options, images, args.modality, args.rounds,
                                                              num_threads)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
