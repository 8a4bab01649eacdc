"""Learning curve: held-out test R^2 against the number of training simulations.

One large simulated campaign gives a fixed validation and test split; each point trains on
the first ``n`` samples of the training split (``data.train_samples``) through the normal
``surrogate fit`` path and tests the best checkpoint. Every point gets the same budget of
optimisation steps, ``max(min_epochs, budget / n)`` epochs, so small campaigns are not
starved of updates. The ridge baseline is fitted on the same ``n`` samples.

    python benchmarks/learning_curve.py --sizes 1000 2000 5000 10000 20000
    python benchmarks/learning_curve.py --config configs/default.yaml --campaign \
        campaigns/default-10k-64.nc --campaign-samples 10000 --sizes 500 1000 2000 3000 5000 8000

Without ``--config`` the network is the CNN of the first measurements (``--head`` picks its
head); with it, the config's model and trainer settings, ``max_epochs`` replaced by the budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import fit_ridge, r2_rmse, summary_features

from data.campaign import open_or_simulate
from data.datamodule import split_indices
from data.physics import PhysicsParams
from train.lightning import run_lightning

MODEL_ARGS = [
    "--model.widths",
    "[32, 64, 128, 256]",
    "--model.kernel_size",
    "[3, 5]",
    "--model.stem_stride",
    "2",
    "--model.coord_channels",
    "true",
]


def train_point(
    campaign: Path,
    n: int,
    epochs: int,
    head: str,
    run_dir: Path,
    model_args: list[str] = MODEL_ARGS,
    val_every: int = 1,
    config: Path | None = None,
) -> dict:
    """Fit on the first ``n`` training samples, test the best checkpoint; R^2, RMSE, wall time."""
    # a config comes first so that the options below override it
    base = ["--config", str(config)] if config else []
    network = [] if config else [*model_args, "--model.head", head]
    args = [
        *base,
        "--run_dir",
        str(run_dir),
        "--data.path",
        str(campaign),
        "--data.train_samples",
        str(n),
        "--data.fractions",
        "[0.8, 0.1, 0.1]",
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.check_val_every_n_epoch",
        str(val_every),
        *network,
    ]
    start = time.perf_counter()
    cli = run_lightning(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = time.perf_counter() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    metrics = json.loads((Path(cli.trainer.log_dir) / "test_metrics.json").read_text())
    return {
        "n": n,
        "epochs": epochs,
        "head": head,
        "r2": metrics["test/r2"],
        "rmse": metrics["test/rmse"],
        "wall_seconds": wall,
    }


def plot_curve(result: dict, path: Path) -> None:
    """Test R^2 of the network and of the ridge baseline against training samples (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(result["points"], key=lambda p: p["n"])
    n = [p["n"] for p in points]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.semilogx(n, [p["r2"] for p in points], "o-", label=result.get("network", "CNN (max head)"))
    ax.semilogx(n, [p["ridge_r2"] for p in points], "s--", label="ridge on summary statistics")
    ax.set_xlabel("training simulations")
    ax.set_ylabel(f"test $R^2$ ({result['test_samples']} held-out designs)")
    epochs = {p["epochs"] for p in points}
    per_point = (
        f"{epochs.pop()} epochs per point"
        if len(epochs) == 1
        else f"{result['budget_sample_passes'] // 1000}k sample-passes per point"
    )
    ax.set_title(f"Learning curve, {per_point}")
    ax.set_xticks(n, [f"{v:,}" for v in n])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", type=Path, default=Path("campaigns/lc-25k-64.nc"))
    parser.add_argument("--campaign-samples", type=int, default=25_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--budget", type=int, default=150_000, help="sample-passes per point")
    parser.add_argument("--min-epochs", type=int, default=15)
    parser.add_argument("--head", default="max", help="head of the CNN without --config")
    parser.add_argument("--config", type=Path, help="a surrogate fit config (model, trainer)")
    parser.add_argument(
        "--val-every", type=int, default=1, help="validate every k epochs (picks the best)"
    )
    parser.add_argument("--run-root", type=Path, default=Path("runs/learning-curve"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_curve.json"))
    opts = parser.parse_args(argv)
    open_or_simulate(opts.campaign, opts.campaign_samples, 64, 0)
    with h5py.File(opts.campaign, "r") as f:
        h, y = f["roughness"][...].astype(np.float64), f["max_vorticity"][...].astype(np.float64)
    split = split_indices(len(y), (0.8, 0.1, 0.1), 0)
    feats = summary_features(h, PhysicsParams.for_size(h.shape[-1]))
    # points already measured (an earlier, interrupted invocation) are kept, not retrained
    points = json.loads(opts.out.read_text())["points"] if opts.out.exists() else []
    commands = [json.loads(opts.out.read_text())["command"]] if opts.out.exists() else []
    done = {p["n"] for p in points}
    for n in opts.sizes:
        if n in done:
            continue
        epochs = max(opts.min_epochs, round(opts.budget / n))
        point = train_point(
            opts.campaign, n, epochs, opts.head, opts.run_root / f"n{n}",
            val_every=opts.val_every, config=opts.config,
        )  # fmt: skip
        point["val_every"] = opts.val_every
        ridge = fit_ridge(feats[split["train"][:n]], y[split["train"][:n]])
        point["ridge_r2"], point["ridge_rmse"] = r2_rmse(
            y[split["test"]], ridge(feats[split["test"]])
        )
        points.append(point)
        points.sort(key=lambda p: p["n"])
        print(
            f"n={n:>6} epochs={epochs:>4} network R2={point['r2']:.4f} RMSE={point['rmse']:.5f} "
            f"ridge R2={point['ridge_r2']:.4f} ({point['wall_seconds'] / 60:.1f} min)",
            flush=True,
        )
        result = {
            "benchmark": "learning curve",
            "campaign": str(opts.campaign),
            "test_samples": len(split["test"]),
            "budget_sample_passes": opts.budget,
            "network": f"config {opts.config}" if opts.config else f"CNN ({opts.head} head)",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} cpus={torch.get_num_threads()}",
            "command": " && ".join(
                [
                    *commands,
                    " ".join(["python benchmarks/learning_curve.py", *(argv or sys.argv[1:])]),
                ]
            ),
            "points": points,
        }
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(result, indent=2) + "\n")
    result = json.loads(opts.out.read_text())
    plot_curve(result, opts.out.with_suffix(".png"))
    return result


if __name__ == "__main__":
    main()
