"""Held-out accuracy of trained surrogates beside a non-deep baseline, in one run.

Evaluates each run folder's best checkpoint (``surrogate.load_model``) on the test split
recorded in the run's ``split.json``, fits the ridge baseline of ``benchmarks/baseline.py``
on the same training split, and reports R^2, RMSE, epochs and training wall time.

    python benchmarks/accuracy.py --runs runs/default-gap runs/default-max
"""

from __future__ import annotations

import argparse
import csv
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

from data.physics import PhysicsParams
from surrogate import load_model


def run_info(run: Path) -> dict:
    """Split, best checkpoint and training time/epochs recorded in a run folder."""
    version = sorted(run.glob("version_*/split.json"), key=lambda p: p.stat().st_mtime)[0].parent
    split = json.loads((version / "split.json").read_text())
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))[-1]
    summary = version / "fit_summary.json"
    if summary.exists():
        fit = json.loads(summary.read_text())
        wall, epochs = fit["wall_seconds"], fit["epochs"]
    else:  # runs started before fit_summary existed: split.json is written at fit start
        wall = (version / "metrics.csv").stat().st_mtime - (version / "split.json").stat().st_mtime
        with open(version / "metrics.csv") as f:
            epochs = 1 + max(int(row["epoch"]) for row in csv.DictReader(f) if row.get("val/r2"))
    best_epoch = int(torch.load(best, map_location="cpu", weights_only=True)["epoch"])
    return {
        "split": split,
        "best": best,
        "wall_seconds": wall,
        "epochs": epochs,
        "best_epoch": best_epoch,
    }


def predict(model: torch.nn.Module, fields: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        out = [
            model(torch.from_numpy(fields[i : i + batch])[:, None])
            for i in range(0, len(fields), batch)
        ]
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    opts = parser.parse_args(argv)
    infos = {str(r): run_info(r) for r in opts.runs}
    campaign = infos[str(opts.runs[0])]["split"]["campaign"]
    with h5py.File(campaign, "r") as f:
        h, y = f["roughness"][...], f["max_vorticity"][...]
    split = infos[str(opts.runs[0])]["split"]
    train, test = np.asarray(split["train"]), np.asarray(split["test"])
    rows = {}
    start = time.perf_counter()
    params = PhysicsParams.for_size(h.shape[-1])
    feats = summary_features(h.astype(np.float64), params)
    ridge = fit_ridge(feats[train], y[train].astype(np.float64))
    r2, rmse = r2_rmse(y[test], ridge(feats[test]))
    rows["ridge on 9 summary statistics (quadratic)"] = {
        "r2": r2,
        "rmse": rmse,
        "epochs": None,
        "wall_seconds": time.perf_counter() - start,
    }
    for run, info in infos.items():
        if info["split"]["test"] != split["test"]:
            raise SystemExit(f"{run}: test split differs from {opts.runs[0]}")
        model = load_model(info["best"])
        r2, rmse = r2_rmse(y[test], predict(model, h[test]))
        head = model.network.head_type
        rows[f"CNN {head} head ({run})"] = {
            "r2": r2,
            "rmse": rmse,
            "epochs": info["epochs"],
            "best_epoch": info["best_epoch"],
            "wall_seconds": info["wall_seconds"],
            "checkpoint": str(info["best"]),
        }
    result = {
        "benchmark": "held-out test accuracy",
        "campaign": campaign,
        "train_samples": len(train),
        "test_samples": len(test),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} cpus={torch.get_num_threads()}",
        "command": " ".join(["python benchmarks/accuracy.py", *(argv or sys.argv[1:])]),
        "rows": rows,
    }
    print(f"{'model':<60} {'R2':>7} {'RMSE':>8} {'epochs':>6} {'wall [min]':>10}")
    for name, row in rows.items():
        epochs = "-" if row["epochs"] is None else str(row["epochs"])
        print(
            f"{name:<60} {row['r2']:>7.4f} {row['rmse']:>8.5f} {epochs:>6} "
            f"{row['wall_seconds'] / 60:>10.1f}"
        )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
