"""ROAD's imputation solve with one thread per core against one thread, same fields and masks.

    python benchmarks/bench_road.py --out benchmarks/results/road_threads.json

The systems are shaped like an evaluation's: 256 fields of 64x64 (four blocks of 64), the
cells removed in the order of a smooth map (contiguous regions, as MORF/LERF remove them), at
ROAD's nine percentages. The imputed fields must be identical bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.evaluation.road import ROAD_PERCENTAGES, noisy_linear_imputation  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/road_threads.json")
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    fields = torch.as_tensor(0.05 * rng.normal(size=(opts.fields, 64, 64)), dtype=torch.float32)
    order = gaussian_filter(rng.normal(size=(opts.fields, 64, 64)), (0, 4, 4))
    masks = []
    for p in ROAD_PERCENTAGES:
        threshold = np.quantile(order.reshape(opts.fields, -1), 1 - p, axis=1)[:, None, None]
        masks.append(torch.as_tensor(order >= threshold))
    timings, results = {}, {}
    for workers in (1, None):
        best = float("inf")
        for _ in range(opts.repeats):
            start = time.perf_counter()
            out = [
                noisy_linear_imputation(fields, m, generator=torch.Generator().manual_seed(0),
                                        workers=workers)
                for m in masks
            ]  # fmt: skip
            best = min(best, time.perf_counter() - start)
        name = "one_thread" if workers == 1 else f"{os.cpu_count()}_threads"
        timings[name], results[name] = best, out
    one, many = results.values()
    identical = all(torch.equal(a, b) for a, b in zip(one, many, strict=True))
    (t1, tn) = timings.values()
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "command": " ".join(sys.argv), "fields": opts.fields,
        "percentages": list(ROAD_PERCENTAGES), "seconds": timings,
        "speedup": round(t1 / tn, 2), "identical": identical,
    }  # fmt: skip
    print(f"one thread {t1:.2f} s, {os.cpu_count()} threads {tn:.2f} s: {t1 / tn:.2f}x; "
          f"identical: {identical}")  # fmt: skip
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
