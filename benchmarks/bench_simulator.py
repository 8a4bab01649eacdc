"""Cost of the reduced-order simulator: a full campaign with ground truth, and the FFT backend.

Simulates ``--samples`` patches of ``--size`` cells with ``data.simulator.simulate_chunks``
(field, target and exact contribution maps), timing it and recording peak memory
(``tracemalloc`` peak of Python/numpy allocations in a second, traced pass, and the
process's maximum resident set size). It then times the convolution step alone,
``VorticityModel.field`` (``scipy.fft``, ``--workers`` threads), against the same zero-padded
convolution written with ``numpy.fft`` on the same padded kernel, on ``--field-samples``
patches. Prints a table and writes JSON::

    python benchmarks/bench_simulator.py --samples 10000 --size 64 --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

from data.physics import PhysicsParams
from data.roughness import roughness_fields
from data.simulator import VorticityModel, simulate_chunks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--field-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the field timing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/simulator.json"))
    return parser.parse_args(argv)


def max_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def run_campaign(params: PhysicsParams, args: argparse.Namespace) -> dict[str, float]:
    """Time the campaign (statistics gathered outside the clock) and summarise the target."""
    target, margin, top10 = [], [], []
    chunks = simulate_chunks(params, args.samples, args.seed, args.chunk_size, args.workers)
    elapsed = 0.0
    while True:
        tic = time.perf_counter()
        item = next(chunks, None)
        elapsed += time.perf_counter() - tic
        if item is None:
            break
        chunk = item[1]
        target.append(chunk.max_vorticity)
        margin.append(chunk.peak_margin)
        cells = np.sort(np.abs(chunk.contribution).reshape(len(chunk.contribution), -1), axis=1)
        keep = round(0.1 * cells.shape[1])
        top10.append(cells[:, -keep:].sum(axis=1) / cells.sum(axis=1))
    y, m = np.concatenate(target), np.concatenate(margin)
    return {
        "wall_s": elapsed,
        "samples_per_s": args.samples / elapsed,
        "max_rss_mib": max_rss_mib(),
        "max_vorticity_mean": float(y.mean()),
        "max_vorticity_std": float(y.std()),
        "max_vorticity_skew": float(stats.skew(y)),
        "top10_share_of_abs_contribution": float(np.concatenate(top10).mean()),
        "fraction_margin_below_2pct": float((m < 0.02).mean()),
        "fraction_margin_below_5pct": float((m < 0.05).mean()),
    }


def traced_peak_mib(params: PhysicsParams, args: argparse.Namespace) -> float:
    """``tracemalloc`` peak over a second pass of the same campaign, MiB."""
    tracemalloc.start()
    for _ in simulate_chunks(params, args.samples, args.seed, args.chunk_size, args.workers):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


class NumpyField:
    """``VorticityModel.field`` rewritten with ``numpy.fft`` (no threads), same padded kernel."""

    def __init__(self, model: VorticityModel) -> None:
        n, lx = model.params.size, model.params.length_x
        self.n, self.lx, self.shape = n, lx, model.fft_shape
        wrapped = np.zeros(self.shape)
        eta = np.arange(-(n - 1), n) % self.shape[0]
        xi = np.arange(-1, lx) % self.shape[1]
        wrapped[np.ix_(eta, xi)] = model.kernel
        self.kernel_hat = np.fft.rfft2(wrapped)

    def field(self, h: np.ndarray) -> np.ndarray:
        """Vorticity ``(batch, N, LX)`` for heights ``(batch, N, N)``."""
        w = np.fft.irfft2(np.fft.rfft2(h, s=self.shape) * self.kernel_hat, s=self.shape)
        return w[:, : self.n, : self.lx]


def time_fields(params: PhysicsParams, args: argparse.Namespace) -> dict[str, float]:
    """Best-of-``repeats`` time of the field step over ``field_samples`` patches, per backend.

    ``scipy.fft`` runs with ``--workers`` threads and with one, so the threading gain and the
    backend difference can be told apart.
    """
    model = VorticityModel(params, workers=args.workers)
    single = VorticityModel(params, workers=1)
    baseline = NumpyField(model)
    h = roughness_fields(params, args.seed, 0, args.field_samples)
    blocks = [h[i : i + args.chunk_size] for i in range(0, len(h), args.chunk_size)]
    backends = {
        f"scipy.fft, workers={args.workers}": model.field,
        "scipy.fft, workers=1": single.field,
        "numpy.fft": baseline.field,
    }
    out: dict[str, float] = {}
    for name, fn in backends.items():
        best = float("inf")
        for _ in range(args.repeats):
            tic = time.perf_counter()
            for block in blocks:
                fn(block)
            best = min(best, time.perf_counter() - tic)
        out[name] = best
    diff = max(np.abs(model.field(b) - baseline.field(b)).max() for b in blocks)
    out["numpy_over_scipy"] = out["numpy.fft"] / out[f"scipy.fft, workers={args.workers}"]
    out["max_abs_difference"] = float(diff)
    return out


def machine() -> dict[str, object]:
    """Where the numbers came from."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark, print a table, write the JSON file and return its content."""
    args = parse_args(argv)
    params = PhysicsParams.for_size(args.size)
    campaign = run_campaign(params, args)
    campaign["tracemalloc_peak_mib"] = traced_peak_mib(params, args)
    fields = time_fields(params, args)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "campaign": campaign,
        "field_step": fields,
    }
    print(
        f"campaign  {args.samples} samples at {args.size}x{args.size}, ground truth included, "
        f"workers={args.workers}"
    )
    print(
        f"  wall time               {campaign['wall_s']:9.2f} s "
        f"({campaign['samples_per_s']:.0f} samples/s)"
    )
    print(f"  tracemalloc peak        {campaign['tracemalloc_peak_mib']:9.1f} MiB")
    print(f"  max RSS (process)       {campaign['max_rss_mib']:9.1f} MiB")
    print(
        f"  max_vorticity mean/std/skew  {campaign['max_vorticity_mean']:.4f} / "
        f"{campaign['max_vorticity_std']:.4f} / {campaign['max_vorticity_skew']:.3f}"
    )
    print(f"  top-10% share of sum|C| {campaign['top10_share_of_abs_contribution']:9.3f}")
    print(
        f"  margin < 2% / < 5%      {campaign['fraction_margin_below_2pct']:9.3f} / "
        f"{campaign['fraction_margin_below_5pct']:.3f}"
    )
    print(f"field step  {args.field_samples} samples, best of {args.repeats}")
    print(f"  {'backend':<24}{'time (s)':>10}{'samples/s':>11}")
    for name in (f"scipy.fft, workers={args.workers}", "scipy.fft, workers=1", "numpy.fft"):
        rate = args.field_samples / fields[name]
        print(f"  {name:<24}{fields[name]:>10.3f}{rate:>11.0f}")
    print(
        f"  numpy / scipy time ratio {fields['numpy_over_scipy']:.2f}, "
        f"max |difference| {fields['max_abs_difference']:.1e}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
