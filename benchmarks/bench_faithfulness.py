"""Deletion/insertion cost: every perturbed input in batched passes vs one input per pass.

Same model (the ``configs/default.yaml`` architecture, random weights, eval mode), the same
64x64 roughness fields, maps (random, so no ties) and blurred baseline for both contenders:

- ``loop``: :func:`explain.evaluation.faithfulness.deletion_insertion_loop`, one sample and
  one step per forward pass, ``2 (steps + 1)`` passes of one input per sample;
- ``batched``: :func:`explain.evaluation.faithfulness.deletion_insertion`, ``2 steps`` inputs
  per sample (the curve endpoints are ``f(x)`` and ``f(b)``) in passes of at most ``--chunk``
  inputs.

The loop runs once (it is the slow one); the batched call runs ``--repeats`` times after a
small warm-up and its median is reported. Both must agree: raw outputs to ``1e-5`` (relative
to the output's scale) and AUCs to ``1e-5``.

    OMP_NUM_THREADS=2 python benchmarks/bench_faithfulness.py --samples 16 --steps 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import torch

from explain.baselines import blurred
from explain.evaluation.faithfulness import (
    FaithfulnessCurves,
    deletion_insertion,
    deletion_insertion_loop,
)
from surrogate import PhysicalSurrogate, RoughnessCNN

T = TypeVar("T")
DEFAULT_NETWORK = {
    "widths": (32, 64, 128, 256),
    "kernel_size": (3, 5),
    "stem_stride": 2,
    "coord_channels": True,
    "head": "gap",
}


def build_model() -> PhysicalSurrogate:
    torch.manual_seed(0)
    model = PhysicalSurrogate(RoughnessCNN(**DEFAULT_NETWORK))
    model.input_norm.set_statistics(0.0, 0.05)
    model.target_norm.set_statistics(0.1, 0.04)
    return model.eval()


def timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def compare(batched: FaithfulnessCurves, loop: FaithfulnessCurves) -> dict[str, float | bool]:
    """Largest differences between the two results and whether they pass the tolerances."""
    scale = max(1.0, float(loop.deletion_output.abs().max()))
    output = max(
        float((batched.deletion_output - loop.deletion_output).abs().max()),
        float((batched.insertion_output - loop.insertion_output).abs().max()),
    )
    auc = max(
        float((batched.deletion_auc - loop.deletion_auc).abs().max()),
        float((batched.insertion_auc - loop.insertion_auc).abs().max()),
    )
    return {
        "max_abs_diff_output": output,
        "max_abs_diff_auc": auc,
        "agree": output <= 1e-5 * scale and auc <= 1e-5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="batched runs (median)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: as is)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/faithfulness.json"))
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)

    model = build_model()
    gen = torch.Generator().manual_seed(0)
    shape = (opts.samples, 1, opts.size, opts.size)
    x = 0.05 * torch.randn(shape, generator=gen)
    maps = torch.randn(opts.samples, opts.size, opts.size, generator=gen)
    b = blurred(x)
    load = os.getloadavg()[0]

    deletion_insertion(model, x[:1], maps[:1], b[:1], steps=4, chunk=opts.chunk)  # warm-up
    batched_times = []
    for _ in range(opts.repeats):
        batched, seconds = timed(
            deletion_insertion, model, x, maps, b, steps=opts.steps, chunk=opts.chunk,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        batched_times.append(seconds)
    loop, loop_s = timed(
        deletion_insertion_loop, model, x, maps, b, opts.steps, torch.Generator().manual_seed(1)
    )
    batched_s = statistics.median(batched_times)
    inputs = {"loop": 2 * (opts.steps + 1) * opts.samples, "batched": 2 * opts.steps * opts.samples}
    rows = {
        "loop": {"seconds": loop_s, "inputs": inputs["loop"], "batch": 1},
        "batched": {"seconds": batched_s, "inputs": inputs["batched"], "batch": opts.chunk},
    }
    for row in rows.values():
        row["ms_per_input"] = 1e3 * row["seconds"] / row["inputs"]
    check = compare(batched, loop)
    speedup = loop_s / batched_s

    print(
        f"{opts.samples} samples x {opts.size}x{opts.size}, {opts.steps} steps, "
        f"{torch.get_num_threads()} torch threads, load {load:.1f}"
    )
    print(f"  {'':<8} {'seconds':>9} {'inputs':>8} {'ms/input':>9}")
    for name, row in rows.items():
        print(f"  {name:<8} {row['seconds']:9.2f} {row['inputs']:8d} {row['ms_per_input']:9.2f}")
    print(
        f"  speed-up {speedup:.1f}x; max |diff| output {check['max_abs_diff_output']:.2e}, "
        f"AUC {check['max_abs_diff_auc']:.2e}; agree: {check['agree']}"
    )
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": load,
        "samples": opts.samples,
        "size": opts.size,
        "steps": opts.steps,
        "chunk": opts.chunk,
        "batched_repeats_s": batched_times,
        "rows": rows,
        "speedup": speedup,
        **check,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {opts.out}")


if __name__ == "__main__":
    main()
