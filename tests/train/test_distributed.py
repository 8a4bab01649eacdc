"""``explain`` and ``evaluate --devices 2`` on the CPU (gloo) against one device.

Two processes through the real ``surrogate`` command (Lightning relaunches its command line
for the second rank). The designs are an odd number, so the two ranks get unequal shares; the
outputs must be those of one device: maps bit for bit, scores equal, in the same order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from data.errors import InputError
from train.distributed import Processes, processes, require_gradients

SURROGATE = Path(sys.executable).parent / "surrogate"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process in both runs
    done = subprocess.run(
        [str(SURROGATE), *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _variables(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    out: dict[str, tuple[np.ndarray, dict]] = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, (obj[()], dict(obj.attrs)))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return out


@pytest.mark.slow
def test_explain_on_two_processes_writes_the_one_device_file(
    tmp_path: Path, checkpoint: Path, campaign_file: Path
) -> None:
    common = ["explain", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    common += ["--samples", "3:24", "--batch-size", "4", "--accelerator", "cpu"]  # 21 designs
    common += ["--methods", "hirescam", "layercam", "integrated-gradients", "gradient"]
    one, two = tmp_path / "one.nc", tmp_path / "two.nc"
    _run(*common, "--out", str(one))
    _run(*common, "--out", str(two), "--devices", "2")
    a, b = _variables(one), _variables(two)
    assert a.keys() == b.keys()
    for name, (values, attrs) in a.items():
        assert np.array_equal(values, b[name][0]), name  # bit for bit (no NaN in maps)
        assert attrs.keys() == b[name][1].keys(), name
    with xr.open_dataset(one, engine="h5netcdf") as x, xr.open_dataset(two, engine="h5netcdf") as y:
        assert list(y["sample"].values) == list(range(3, 24))  # in order, each design once
        for name in ("ig_residual", "ig_relative_residual", "methods", "layer"):
            assert x.attrs[name] == y.attrs[name], name  # the largest residual over all ranks
        assert not any(k.startswith("part_") for k in y.attrs)
    assert not list(tmp_path.glob(".*parts*"))  # the ranks' parts are gone


@pytest.mark.slow
def test_evaluate_on_two_processes_gives_the_one_device_scores(
    tmp_path: Path, checkpoint: Path, campaign_file: Path
) -> None:
    common = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    common += ["--split", "all", "--samples", "11", "--batch-size", "2", "--steps", "4"]
    common += ["--random-permutations", "2", "--sanity-samples", "2", "--accelerator", "cpu"]
    common += ["--methods", "hirescam", "gradient", "integrated-gradients", "random-map"]
    _run(*common, "--out", str(tmp_path / "one"))
    _run(*common, "--out", str(tmp_path / "two"), "--devices", "2")
    with (
        xr.open_dataset(tmp_path / "one" / "scores.nc", engine="h5netcdf") as a,
        xr.open_dataset(tmp_path / "two" / "scores.nc", engine="h5netcdf") as b,
    ):
        assert list(a.data_vars) == list(b.data_vars)
        assert list(b["sample"].values) == list(a["sample"].values)
        for name in a.data_vars:
            if a[name].dtype.kind == "f":
                np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    csv_one = (tmp_path / "one" / "scores.csv").read_text()
    assert (tmp_path / "two" / "scores.csv").read_text() == csv_one
    assert not list(tmp_path.glob(".*parts*"))


def test_gradients_off_stop_the_run() -> None:
    require_gradients()  # on by default
    with torch.inference_mode(), pytest.raises(InputError, match="gradients are off"):
        require_gradients()
    with torch.no_grad(), pytest.raises(InputError, match="gradients are off"):
        with processes(1, "cpu"):
            pass


def test_one_device_starts_nothing_and_shares_batches_by_rank() -> None:
    with processes(1, "cpu") as here:
        assert (here.rank, here.world, here.fabric) == (0, 1, None)
    shares = [Processes(rank, 2).batches(11, 2) for rank in (0, 1)]
    assert shares == [[0, 4, 8], [2, 6, 10]]
    with pytest.raises(InputError, match="--devices"):
        with processes(0, "cpu"):
            pass
