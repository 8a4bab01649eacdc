"""Ingest at scale: speed against a bare h5py loop, and the surrogate trained on each ingested
layout against the one trained on the directly simulated campaign.

    python benchmarks/ingest_checks.py --work /tmp/ingest-checks \\
        --out benchmarks/results/ingest_checks.json

1. Speed: ``--speed-runs`` (default 10,000) same-grid run files at 64x64 ingested with
   ``surrogate ingest --workers 2`` (the whole command: start-up, hashing, reading, the
   journal, the campaign), against a loop that only opens each file with h5py and reads its
   heights and target, in the same run.
2. Round trip and training: ``--fit-runs`` (default 3,000, the demo's size) runs in each layout,
   ingested; the campaign's heights and targets against the direct ``surrogate simulate``; and
   ``surrogate fit --config configs/demo.yaml`` then ``test --ckpt_path best`` on each, same
   seed, against the same on the direct campaign.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENTRY = "from train.cli import console_main; console_main()"


def surrogate(*args: str) -> float:
    """Run ``surrogate ARGS``; its wall time in seconds (fails loudly)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"surrogate {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def bare_loop(folder: Path) -> float:
    import h5py

    start = time.perf_counter()
    for path in sorted(folder.glob("run-*.h5")):
        with h5py.File(path, "r") as f:
            f["surface/height"][...]
            f["results/max_vorticity"][()]
    return time.perf_counter() - start


def test_r2(campaign: Path, run_dir: Path) -> float:
    config = ["--config", "configs/demo.yaml", "--data.path", str(campaign),
              "--data.simulate_samples", "null", "--run_dir", str(run_dir)]  # fmt: skip
    surrogate("fit", *config)
    surrogate("test", *config, "--ckpt_path", "best")
    (metrics,) = run_dir.glob("version_*/test_metrics.json")
    return float(json.loads(metrics.read_text())["test/r2"])


def main() -> int:
    from data.campaign import open_campaign

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--speed-runs", type=int, default=10_000)
    parser.add_argument("--fit-runs", type=int, default=3000)
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ingest_checks.json")
    opts = parser.parse_args()
    work = opts.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv)}  # fmt: skip

    runs = work / f"speed-{opts.speed_runs}"
    if not (runs / "mapping.yaml").exists():
        surrogate("simulate", "--samples", str(opts.speed_runs), "--size", "64", "--quiet",
                  "--per-run", str(runs), "--overwrite")  # fmt: skip
    out = work / "speed.nc"
    for stale in (out, out.with_name("ingest_report.csv")):
        stale.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(out.with_name(f".{out.name}.ingest"))], check=True)
    bare = bare_loop(runs)
    ingest = surrogate("ingest", str(runs), "--mapping", str(runs / "mapping.yaml"), "--out",
                       str(out), "--workers", "2")  # fmt: skip
    result["speed"] = {
        "runs": opts.speed_runs, "ingest_seconds": round(ingest, 1),
        "bare_h5py_loop_seconds": round(bare, 1), "ratio_to_bare": round(ingest / bare, 2),
        "runs_per_second": round(opts.speed_runs / ingest, 1),
    }  # fmt: skip
    print(f"speed: {opts.speed_runs} runs ingested in {ingest:.1f} s; a bare h5py read loop "
          f"{bare:.1f} s (ratio {ingest / bare:.2f})")  # fmt: skip

    if not opts.skip_fit:
        n = opts.fit_runs
        direct = work / f"direct-{n}.nc"
        if not direct.exists():
            surrogate("simulate", "--samples", str(n), "--size", "64", "--seed", "0", "--quiet",
                      "--out", str(direct))  # fmt: skip
        with open_campaign(direct) as ds:
            heights, targets = ds["roughness"].values, ds["max_vorticity"].values
        result["fit"] = {"direct_test_r2": test_r2(direct, work / "run-direct")}
        print(f"fit on the direct campaign: test R2 {result['fit']['direct_test_r2']:.4f}")
        for layout in ("same-grid", "fine-metres", "field"):
            folder, campaign = work / f"runs-{layout}", work / f"ingested-{layout}.nc"
            if not (folder / "mapping.yaml").exists():
                surrogate(
                    "simulate",
                    "--samples",
                    str(n),
                    "--size",
                    "64",
                    "--seed",
                    "0",
                    "--quiet",
                    "--per-run",
                    str(folder),
                    "--layout",
                    layout,
                    "--overwrite",
                )
            if not campaign.exists():
                surrogate("ingest", str(folder), "--mapping", str(folder / "mapping.yaml"),
                          "--out", str(campaign))  # fmt: skip
            with open_campaign(campaign) as ds:
                h, t = ds["roughness"].values, ds["max_vorticity"].values
            row = {
                "heights_max_abs_diff": float(np.abs(h - heights).max()),
                "targets_max_rel_diff": float(np.max(np.abs(t - targets) / np.abs(targets))),
                "test_r2": test_r2(campaign, work / f"run-{layout}"),
            }
            result["fit"][layout] = row
            print(
                f"{layout}: heights max |diff| {row['heights_max_abs_diff']:.3g}, targets max "
                f"rel diff {row['targets_max_rel_diff']:.3g}, test R2 {row['test_r2']:.4f}"
            )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
