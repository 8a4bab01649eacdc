"""Probe: does SmoothGrad x input agree with the exact contribution better than gradient x input?

SmoothGrad (Smilkov et al. 2017) averages the input gradient over noisy copies of the design,
``x + N(0, sigma^2)`` with ``sigma`` a fraction of the design's height range; multiplied by the
design it is a candidate for the ``smoothgrad-x-input`` method the issue lists as optional. It has
no completeness property (its sum is not ``f(x) - f(b)``). Prints the mean per-design Spearman
with the truth per checkpoint and noise level, on the first designs with peak margin >= 5%.

    python benchmarks/smoothgrad_probe.py --data campaigns/heldout-1500-s1.nc \\
        runs/cnn-s0/checkpoints/best-*.ckpt runs/default-s0/checkpoints/best-*.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from explain.evaluation.groundtruth import MIN_MARGIN
from explain.evaluation.similarity import spearman
from surrogate import load_model


def smoothgrad_x_input(
    model: torch.nn.Module, x: torch.Tensor, fraction: float, samples: int, g: torch.Generator
) -> np.ndarray:
    """``x * mean_i grad f(x + eps_i)``, ``(batch, y, x)``; plain gradient x input at 0."""
    span = x.amax((1, 2, 3), keepdim=True) - x.amin((1, 2, 3), keepdim=True)
    total = torch.zeros_like(x)
    n = 1 if fraction == 0 else samples
    for _ in range(n):
        noisy = (x + fraction * span * torch.randn(x.shape, generator=g)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(noisy).sum(), noisy)
        total += grad / n
    return (total * x)[:, 0].numpy()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--designs", type=int, default=400)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    p.add_argument("--samples", type=int, default=16, help="noisy copies per design")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/smoothgrad_probe.json"))
    a = p.parse_args(argv)
    with xr.open_dataset(a.data) as ds:
        keep = np.flatnonzero(ds.peak_margin.values >= MIN_MARGIN)[: a.designs]
        h = torch.from_numpy(ds.roughness.values[keep]).float()[:, None]
        truth = ds.contribution.values[keep].astype(np.float64)
    result = {"data": str(a.data), "designs": len(keep), "samples": a.samples, "rho": {}}
    for path in a.checkpoints:
        model = load_model(path)
        result["rho"][str(path)] = {}
        for fraction in a.fractions:
            g = torch.Generator().manual_seed(0)
            maps = np.concatenate(
                [smoothgrad_x_input(model, h[i : i + 50], fraction, a.samples, g)
                 for i in range(0, len(h), 50)]
            )  # fmt: skip
            rho = float(np.nanmean(spearman(maps.astype(np.float64), truth)))
            result["rho"][str(path)][str(fraction)] = rho
            print(f"{path}  sigma = {fraction:.2f} x range  rho = {rho:.3f}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
