"""Distributed training on the CPU: two processes (gloo) through the real ``surrogate`` command.

The validation split is odd (7 designs at batch size 2), so torch's padding sampler would
count a design twice; the logged R^2 must be the R^2 over exactly the validation designs.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from data.campaign import simulate_campaign, write_campaign
from data.datamodule import ShardSampler
from surrogate.checkpoint import load_model, read_checkpoint

SURROGATE = Path(sys.executable).parent / "surrogate"  # Lightning relaunches its argv per rank


def _fit(smoke: Path, campaign: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [str(SURROGATE), "fit", "--config", str(smoke), "--data.path", str(campaign)]
    args += ["--run_dir", str(run_dir), "--data.batch_size", "2"]
    args += ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    args += ["--trainer.accelerator", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _last_val_r2(metrics_csv: Path) -> float:
    with metrics_csv.open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/r2")]
    return float(rows[-1]["val/r2"])


def _r2_over_val(ckpt: Path, campaign: Path) -> tuple[float, int]:
    val = np.asarray(read_checkpoint(ckpt)["CampaignDataModule"]["split_val"])
    with xr.open_dataset(campaign, engine="h5netcdf") as ds:
        rough = torch.from_numpy(ds["roughness"].values[val].astype(np.float32))[:, None]
        true = ds["max_vorticity"].values[val].astype(np.float64)
    with torch.no_grad():
        pred = load_model(ckpt)(rough).double().numpy()
    r2 = 1 - np.square(true - pred).sum() / np.square(true - true.mean()).sum()
    return float(r2), len(val)


def test_shard_sampler_counts_each_design_once() -> None:
    data = list(range(7))
    shards = [list(ShardSampler(data, 2, rank)) for rank in (0, 1)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]
    assert [len(ShardSampler(data, 2, rank)) for rank in (0, 1)] == [4, 3]


@pytest.mark.slow
def test_ddp_fit_counts_each_validation_design_once_and_resumes(
    tmp_path: Path, smoke: Path
) -> None:
    campaign = write_campaign(simulate_campaign(67, size=16, seed=0), tmp_path / "c67.nc")
    run_dir = tmp_path / "run"
    _fit(smoke, campaign, run_dir, "--trainer.max_epochs", "1")

    logged = _last_val_r2(run_dir / "version_0" / "metrics.csv")
    r2, n_val = _r2_over_val(run_dir / "checkpoints" / "last.ckpt", campaign)
    assert n_val == 7  # odd: two ranks get 4 and 3 designs
    assert logged == pytest.approx(r2, abs=1e-5)
    # run files once, by rank 0: one version folder, one best and one last checkpoint
    assert sorted(p.name for p in run_dir.glob("version_*")) == ["version_0"]
    files = {p.name for p in (run_dir / "version_0").iterdir()}
    assert {"split.json", "config.yaml", "fit_summary.json", "metrics.csv"} <= files
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best-epoch000.ckpt",
        "last.ckpt",
    ]

    _fit(smoke, campaign, run_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    resumed = sorted(p.name for p in run_dir.glob("version_*"))
    assert resumed == ["version_0", "version_1"]  # the resumed run's log, from rank 0 only
    logged = _last_val_r2(run_dir / "version_1" / "metrics.csv")
    assert logged == pytest.approx(
        _r2_over_val(run_dir / "checkpoints" / "last.ckpt", campaign)[0], abs=1e-5
    )
