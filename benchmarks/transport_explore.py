"""Variants of the transport network in a plain training loop: accuracy and agreement with physics.

The loop the design of ``TransportNet`` was chosen with (issue 9): the same split, normalisers,
sign-flip augmentation, AdamW and one-cycle schedule as ``surrogate fit``, without Lightning, so
that a variant costs two minutes on one core. It prints validation R^2 every five epochs and, at
the end, test R^2 and the mean per-design Spearman with the exact contribution of
gradient x input, integrated gradients and (with ``--source``) HiResCAM at the source stencil,
over the test designs with peak margin >= 5%. One JSON line per run is appended to ``--out``.
The product's numbers come from ``surrogate fit`` and ``benchmarks/error_budget.py``.

    python benchmarks/transport_explore.py --kernel free --tau 0.1          # the first design
    python benchmarks/transport_explore.py --kernel marching --even --tau 0 --source
    python benchmarks/transport_explore.py --kernel marching --even --tau 0 --source \
        --monotone --smoothness 1e-3                                      # configs/default.yaml

``--save`` keeps the trained network (weights, scales, arguments) for a closer look.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from data.datamodule import split_indices
from explain.evaluation.similarity import spearman
from explain.gradient import gradient_maps
from explain.path import integrated_gradients
from surrogate.transport import MarchingKernel, TransportNet


class Physical(nn.Module):
    """The network with fixed standardisation: heights in delta -> vorticity in U_e/delta."""

    def __init__(self, network: nn.Module, stats: tuple[float, float, float, float]) -> None:
        super().__init__()
        self.network = network
        self.h_mean, self.h_std, self.y_mean, self.y_std = stats

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.network((h - self.h_mean) / self.h_std) * self.y_std + self.y_mean


def r2(model: nn.Module, h: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([model(h[i : i + 500]) for i in range(0, len(h), 500)])
    return 1 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def gradient_times_input(model: nn.Module, h: torch.Tensor) -> np.ndarray:
    """``h * df/dh`` ``(batch, y, x)`` in U_e/delta per cell."""
    h = h.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(h).sum(), h)
    return (grad * h).detach()[:, 0].numpy()


def agreement(maps: np.ndarray, truth: np.ndarray) -> float:
    return float(np.nanmean(spearman(maps.astype(np.float64), truth)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--campaign", type=Path, default=Path("campaigns/default-10k-64.nc"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--kernel-lr", type=float, default=1.0, help="kernel learning-rate factor")
    p.add_argument("--kernel", default="free", choices=["free", "marching"])
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--modes", type=int, default=1)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--even", action="store_true")
    p.add_argument("--source", action="store_true")
    p.add_argument("--monotone", action="store_true", help="a readout that never decreases")
    p.add_argument("--smoothness", type=float, default=0.0, help="weight of the spanwise roughness")
    p.add_argument("--centre", action="store_true", help="subtract the mean height as well")
    p.add_argument(
        "--init", type=float, default=None, help="MarchingKernel.INIT (amplitude scale at start)"
    )
    p.add_argument(
        "--rate-decay",
        type=float,
        default=None,
        help="weight decay of the marching rates (default --wd)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/transport_explore.jsonl"))
    p.add_argument("--save", type=Path, help="write the trained network's weights and scales here")
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    with xr.open_dataset(a.campaign) as ds:
        h = torch.from_numpy(ds.roughness.values).float()[:, None]
        y = torch.from_numpy(ds.max_vorticity.values).float()
        truth, margin = ds.contribution.values.astype(np.float64), ds.peak_margin.values
    split = split_indices(len(y), (0.8, 0.1, 0.1), 0)
    train, val, test = split["train"], split["val"], split["test"]
    # the surrogate scales the heights of a transport network without centring them
    h_mean = float(h[train].double().mean()) if a.centre else 0.0
    h_scale = (
        float(h[train].double().std())
        if a.centre
        else float(h[train].double().pow(2).mean().sqrt())
    )
    stats = (h_mean, h_scale, float(y[train].mean()), float(y[train].std()))
    if a.init is not None:
        MarchingKernel.INIT = a.init
    net = TransportNet(
        channels=a.channels, hidden=a.hidden, tau=a.tau, kernel=a.kernel, modes=a.modes,
        even=a.even, source=a.source, monotone=a.monotone,
        smoothness=a.smoothness,
    )  # fmt: skip
    model = Physical(net, stats)
    rate = [q for n, q in net.named_parameters() if n == "marching.rate"]
    kernel = [
        q
        for n, q in net.named_parameters()
        if n.startswith(("taps", "marching")) and n != "marching.rate"
    ]
    rest = [q for n, q in net.named_parameters() if not n.startswith(("taps", "marching"))]
    groups = [{"params": kernel, "lr": a.lr * a.kernel_lr}, {"params": rest, "lr": a.lr}]
    if rate:
        decay = a.wd if a.rate_decay is None else a.rate_decay
        groups.append({"params": rate, "lr": a.lr * a.kernel_lr, "weight_decay": decay})
    opt = torch.optim.AdamW(groups, weight_decay=a.wd)
    steps = a.epochs * math.ceil(len(train) / a.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=steps
    )
    g = torch.Generator().manual_seed(a.seed)
    start = time.perf_counter()
    for epoch in range(a.epochs):
        order = torch.from_numpy(train)[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), a.batch):
            b = order[i : i + a.batch]
            flip = 1 - 2 * torch.randint(0, 2, (len(b), 1, 1, 1), generator=g).float()
            x = (h[b] * flip - stats[0]) / stats[1]
            loss = ((net(x) - (y[b] - stats[2]) / stats[3]) ** 2).mean() + net.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        if epoch % 5 == 4 or epoch == a.epochs - 1:
            print(f"{a.tag} epoch {epoch + 1} val R2 {r2(model, h[val], y[val]):.4f}", flush=True)
    kept = test[margin[test] >= 0.05]
    parts = [h[kept[i : i + 100]] for i in range(0, len(kept), 100)]
    gxi = np.concatenate([gradient_times_input(model, x) for x in parts])
    ig = np.concatenate([integrated_gradients(model, x)[1].detach().numpy() for x in parts])
    result = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}
    result.update(
        val_r2=r2(model, h[val], y[val]), test_r2=r2(model, h[test], y[test]),
        gxi_rho=agreement(gxi, truth[kept]), ig_rho=agreement(ig, truth[kept]),
        designs=len(kept), seconds=time.perf_counter() - start,
    )  # fmt: skip
    if a.source:
        hires = [
            gradient_maps(model, x, "network.source", ["hirescam"])[1]["hirescam"] for x in parts
        ]
        result["hirescam_source_rho"] = agreement(torch.cat(hires).numpy(), truth[kept])
    print(json.dumps(result), flush=True)
    if a.save:
        torch.save(
            {
                "state_dict": net.state_dict(),
                "stats": stats,
                "args": {k: v for k, v in result.items() if k in vars(a)},
            },
            a.save,
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
