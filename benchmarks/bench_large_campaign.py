"""Campaigns larger than memory: peak RSS and throughput of one `surrogate fit` epoch.

Three runs of ``surrogate fit --config configs/default.yaml`` for one epoch, each a child
process: 10,000 designs in memory (the default ``data.in_memory_limit_mb``), 10,000 designs
read lazily (``--data.in_memory_limit_mb 0``) and 100,000 designs read lazily. Peak RSS comes
from ``/usr/bin/time -v`` (else ``getrusage(RUSAGE_CHILDREN)`` of a one-child wrapper); the
throughput is training designs per second of the fit (``fit_summary.json``: optimizer steps
times batch size over ``wall_seconds``, which includes the limited validation passes).

    python benchmarks/bench_large_campaign.py --work /tmp/large --limit-train-batches 300

Campaigns (64x64, seed 0) are simulated into ``--work`` when absent (100k: ~3.3 GB, ~3 min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L

from data.campaign import simulate_to_file

HERE = str(Path(__file__).resolve().parent)  # the children import EpochTimer from here
RUNS = (  # name, designs, extra arguments
    ("10k in-memory", 10_000, []),
    ("10k lazy", 10_000, ["--data.in_memory_limit_mb", "0"]),
    ("100k lazy", 100_000, ["--data.in_memory_limit_mb", "0"]),
)
WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "file=sys.stderr); sys.exit(rc)"
)


class EpochTimer(L.Callback):
    """Seconds and designs of the first training epoch, written as JSON to the path in
    ``$BENCH_EPOCH_TIMER`` when the epoch's validation starts (or the epoch ends)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.designs = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self.designs += len(batch[1])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write()

    def _write(self) -> None:
        target = Path(os.environ["BENCH_EPOCH_TIMER"])
        if self.start is not None and not target.exists():
            seconds = time.perf_counter() - self.start
            target.write_text(json.dumps({"seconds": seconds, "designs": self.designs}))


def campaign(work: Path, designs: int) -> Path:
    """The 64x64 campaign of ``designs`` designs in ``work``, simulated if absent."""
    path = work / f"campaign-{designs // 1000}k-64.nc"
    if not path.exists():
        simulate_to_file(path, designs, size=64, seed=0)
    return path


def measured(command: list[str]) -> tuple[list[str], float, str]:
    """``command`` wrapped to report its peak RSS; returns (wrapped, peak MiB, stderr)."""
    if Path("/usr/bin/time").exists():
        wrapped = ["/usr/bin/time", "-v", *command]
        pattern = r"Maximum resident set size \(kbytes\): (\d+)"
    else:
        wrapped = [sys.executable, "-c", WRAPPER, *command]
        pattern = r"MAXRSS_KB (\d+)"
    done = subprocess.run(wrapped, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    found = re.search(pattern, done.stderr)
    return wrapped, int(found.group(1)) / 1024 if found else float("nan"), done.stderr


def fit(path: Path, run_dir: Path, extra: list[str], args: argparse.Namespace) -> dict:
    """One epoch of ``surrogate fit``; its peak RSS, wall time and throughput."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = ["surrogate", "fit", "--config", "configs/default.yaml"]
    command += ["--trainer.max_epochs", "1", "--data.path", str(path), "--run_dir", str(run_dir)]
    command += ["--data.simulate_samples", "null", "--trainer.enable_progress_bar", "false"]
    command += ["--trainer.limit_val_batches", str(args.limit_val_batches)]
    if args.limit_train_batches is not None:
        command += ["--trainer.limit_train_batches", str(args.limit_train_batches)]
    command += ["--trainer.callbacks+=bench_large_campaign.EpochTimer", *extra]
    timer = run_dir.parent / f"{run_dir.name}-epoch.json"
    timer.unlink(missing_ok=True)
    os.environ["BENCH_EPOCH_TIMER"] = str(timer)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    _, peak_mib, _ = measured(command)
    process_seconds = time.perf_counter() - start
    summary = json.loads(next(run_dir.glob("version_*/fit_summary.json")).read_text())
    epoch = json.loads(timer.read_text())
    return {
        "command": " ".join(command),
        "peak_rss_mib": round(peak_mib, 1),
        "process_seconds": round(process_seconds, 1),
        "fit_wall_seconds": round(summary["wall_seconds"], 2),
        "train_epoch_seconds": round(epoch["seconds"], 2),
        "train_designs": epoch["designs"],
        "train_split": summary["train_samples"],
        "designs_per_second": round(epoch["designs"] / epoch["seconds"], 1),
    }


def loader_seconds(path: Path, limit_mb: float, repeats: int = 3) -> float:
    """Fastest of ``repeats`` passes over the training loader alone (no model), in-process:
    the data path's own cost, less exposed to other load on the machine than an epoch."""
    from data.datamodule import CampaignDataModule

    dm = CampaignDataModule(path=str(path), in_memory_limit_mb=limit_mb)
    dm.setup("fit")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _batch in dm.train_dataloader():
            pass
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("campaigns/large"))
    parser.add_argument("--limit-train-batches", type=int, default=None)
    parser.add_argument("--limit-val-batches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_campaign.json"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, designs, extra in RUNS:
        path = campaign(args.work, designs)
        results[name] = fit(path, args.work / f"run-{name.replace(' ', '-')}", extra, args)
        results[name]["file_gib"] = round(path.stat().st_size / 2**30, 2)
        limit = 0.0 if "lazy" in name else 2048.0
        results[name]["loader_only_seconds"] = loader_seconds(path, limit)
        print(name, results[name], flush=True)
    rss, speed = (
        {k: v[key] for k, v in results.items()} for key in ("peak_rss_mib", "designs_per_second")
    )
    ratios = {
        "rss_100k_lazy_over_10k_lazy": round(rss["100k lazy"] / rss["10k lazy"], 3),
        "rss_100k_lazy_over_10k_in_memory": round(rss["100k lazy"] / rss["10k in-memory"], 3),
        "throughput_10k_lazy_over_in_memory": round(speed["10k lazy"] / speed["10k in-memory"], 3),
        "throughput_100k_lazy_over_10k_in_memory": round(
            speed["100k lazy"] / speed["10k in-memory"], 3
        ),
    }
    print(f"\n{'run':<15} {'peak RSS MiB':>12} {'designs':>8} {'epoch s':>8} {'designs/s':>10}")
    for name, r in results.items():
        print(
            f"{name:<15} {r['peak_rss_mib']:>12.0f} {r['train_designs']:>8} "
            f"{r['train_epoch_seconds']:>8.1f} {r['designs_per_second']:>10.1f}"
        )
    for key, value in ratios.items():
        print(f"{key}: {value}")
    payload = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
        "limit_train_batches": args.limit_train_batches,
        "limit_val_batches": args.limit_val_batches,
        "runs": results,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
