"""The full evaluation protocol before and after, in one run: wall time, peak memory, same scores.

    python benchmarks/bench_evaluate.py --checkpoint runs/default/checkpoints/best-*.ckpt \\
        --data campaigns/heldout-1000.nc --samples 1000 --out benchmarks/results/evaluate.json

"before" is ``surrogate evaluate`` of the commit ``--before`` (a git worktree of it, removed
afterwards), "after" the same command of this checkout, with the protocol's default settings
(``--split all``, every method, 100 steps, 10 random orders, ROAD, sanity checks, layer sweep)
unless ``--extra`` adds options to both. ``--after-devices 2 1`` times this checkout with two
processes on the CPU (``--devices 2``), then with one. ``--before-patch C`` applies the source
changes (not the tests) of commit ``C`` to the before tree: a fix that changes results in the
last bit but not the cost (the heads' fixed summation order) goes into both sides. Every
``scores.nc`` variable must be equal to the before run's (NaN where it is NaN); the figures
are printed, and saved as JSON after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))"


def run(tree: Path, args: list[str]) -> dict[str, float]:
    """``surrogate evaluate ARGS`` from the source tree ``tree``: wall seconds, peak RSS.

    This checkout runs through its installed ``surrogate`` script (Lightning relaunches a
    script for a second process); another tree through ``python -c`` with it on the path.
    """
    env = {**os.environ, "PYTHONPATH": str(tree)}
    script = Path(sys.executable).parent / "surrogate"
    if tree == ROOT and script.exists():
        command = [str(script), "evaluate", *args]
    else:
        command = [sys.executable, "-c", LAUNCH, "evaluate", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{shlex.join(command)} exited with {proc.returncode}")
    return {
        "wall_s": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),  # the launching process (rank 0)
        "user_s": round(usage.ru_utime, 1),
        "system_s": round(usage.ru_stime, 1),
    }


def compare(before: Path, after: Path) -> dict[str, object]:
    """Every score variable of two ``scores.nc``: equal bit for bit, and the largest gap."""
    different, largest = [], 0.0
    with (
        xr.open_dataset(before / "scores.nc", engine="h5netcdf") as a,
        xr.open_dataset(after / "scores.nc", engine="h5netcdf") as b,
    ):
        if list(a.data_vars) != list(b.data_vars):
            return {"identical": False, "why": "different variables"}
        for name in a.data_vars:
            x, y = a[name].values, b[name].values
            floats = x.dtype.kind == "f"
            if not (np.array_equal(x, y, equal_nan=True) if floats else np.array_equal(x, y)):
                different.append(name)
            if floats and x.size:
                gap = np.nanmax(np.abs(x - y)) if np.isfinite(x - y).any() else 0.0
                largest = max(largest, float(gap))
        variables = len(a.data_vars)
    rec = [json.loads((p / "summary.json").read_text())["recommendation"] for p in (before, after)]
    return {
        "identical": not different and rec[0] == rec[1],
        "variables": variables,
        "different": different,
        "largest_abs_difference": largest,
        "same_recommendation": rec[0] == rec[1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(
        "--before",
        default="7db3b7c",
        help="commit of 'before' (default: the evaluation with one random stream per design, "
        "before the speed-ups)",
    )
    parser.add_argument(
        "--before-patch",
        nargs="*",
        default=[],
        help="commits whose changes outside tests/ are applied to the before tree",
    )
    parser.add_argument(
        "--after-devices",
        type=int,
        nargs="+",
        default=[1],
        help="processes of the 'after' runs on the CPU, in order (e.g. 2 1)",
    )
    parser.add_argument("--extra", default="", help="options added to every evaluate run")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: temporary)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/evaluate.json")
    opts = parser.parse_args()
    work = opts.work or Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    work.mkdir(parents=True, exist_ok=True)
    common = ["--checkpoint", str(opts.checkpoint.resolve()), "--data", str(opts.data.resolve())]
    common += ["--split", "all", "--samples", str(opts.samples), "--overwrite"]
    common += shlex.split(opts.extra)
    result: dict[str, object] = {
        "what": "surrogate evaluate, full protocol (default settings), before and after",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": shlex.join(sys.argv),
        "samples": opts.samples,
        "before_commit": opts.before,
        "before_patches": opts.before_patch,
        "after_commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
    }

    def save() -> None:  # after every run: a long benchmark cut short keeps what it measured
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(result, indent=2) + "\n")

    tree = work / "before-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(tree),
                    opts.before], check=True, capture_output=True)  # fmt: skip
    try:
        for commit in opts.before_patch:
            diff = subprocess.run(
                ["git", "-C", str(ROOT), "diff", f"{commit}^", commit, "--", ".", ":!tests"],
                capture_output=True, check=True,
            ).stdout  # fmt: skip
            subprocess.run(["git", "-C", str(tree), "apply"], input=diff, check=True)
        result["before"] = before = run(tree, [*common, "--out", str(work / "before")])
        print(f"before ({opts.before}): {before}", flush=True)
        save()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)  # fmt: skip
    identical = True
    for devices in opts.after_devices:
        name = "after" if devices == 1 else f"after_{devices}_processes"
        extra = [] if devices == 1 else ["--devices", str(devices), "--accelerator", "cpu"]
        figures = run(ROOT, [*common, *extra, "--out", str(work / name)])
        scores = compare(work / "before", work / name)
        result[name] = {
            **figures,
            "processes": devices,
            "speed_up": round(before["wall_s"] / figures["wall_s"], 2),
            "scores": scores,
        }
        identical &= bool(scores["identical"])
        print(f"{name}: {result[name]}", flush=True)
        save()
    print(json.dumps(result, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
