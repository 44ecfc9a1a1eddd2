"""Decode one file in this (child) process and report the extra resident memory it took, as JSON.

Usage: ``python -m tests.rss_probe FILE MODALITY WARMUP_FILE``. The warm-up file
(a real image) is decoded first so that imports and codec set-up are in the
baseline; the peak (VmHWM, reset through /proc/self/clear_refs) is then read
after decoding FILE. The address space is capped at the baseline plus 3 GiB so
that a decoder without budgets fails here (MemoryError) instead of swapping
the machine.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

ADDRESS_SPACE_HEADROOM = 3 * 1024**3


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> None:
    path, modality, warmup = sys.argv[1], sys.argv[2], sys.argv[3]
    from diagnostics.imaging import ImageError, decode_image

    decode_image(Path(warmup).read_bytes(), "ct")
    data = Path(path).read_bytes()
    limit = status_kib("VmSize") * 1024 + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = status_kib("VmRSS")
    try:
        decoded = decode_image(data, modality)
        outcome = f"decoded {decoded.pixels.shape}"
    except ImageError as error:
        outcome = error.code
    except MemoryError:
        outcome = "MemoryError"
    print(json.dumps({"outcome": outcome, "baseline_mib": baseline / 1024,
                      "extra_mib": (status_kib("VmHWM") - baseline) / 1024}))


if __name__ == "__main__":
    main()
