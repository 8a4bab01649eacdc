"""Every netCDF output describes itself (CF): the maps of ``surrogate explain``,
``predictions.nc`` of ``surrogate predict`` and ``scores.nc`` of ``surrogate evaluate``, read
the same with xarray and with plain h5py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from data.campaign import write_campaign
from explain.api import MIXED_UNITS
from explain.catalogue import METHODS
from train.cli import main

GLOBALS = ("title", "history", "source", "checkpoint", "campaign", "software_version")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_described(path: Path, checkpoint: Path, campaign: Path, command: str) -> None:
    """Units and long name on every variable and coordinate, with xarray and h5py alike, and
    the CF and provenance global attributes naming the real inputs."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        for name, var in ds.variables.items():
            assert {"units", "long_name"} <= set(var.attrs), name
        assert set(ds.dims) <= set(ds.coords)  # no dimension without positions or labels
        attrs = dict(ds.attrs)
    assert attrs["Conventions"] == "CF-1.8"
    assert attrs["checkpoint_sha256"] == digest(checkpoint)
    assert attrs["campaign_sha256"] == digest(campaign)
    assert attrs["campaign"] == str(campaign)
    assert all(attrs[k] for k in GLOBALS)
    assert attrs["history"].startswith("created ")
    assert f"by surrogate {command} {attrs['software_version']}" in attrs["history"]
    with h5py.File(path, "r") as f:
        for name, item in f.items():
            assert {"units", "long_name"} <= set(item.attrs), name
        assert text(f.attrs["Conventions"]) == "CF-1.8"
        assert text(f.attrs["checkpoint_sha256"]) == digest(checkpoint)


def test_maps_file(
    checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset, tmp_path: Path
) -> None:
    out = tmp_path / "maps.nc"
    args = ["explain", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    extra = ["--out", str(out), "--methods", "cam", "gradient", "--samples", "3,5,9"]
    assert main([*args, *extra]) == 0
    check_described(out, checkpoint, campaign_file, "explain")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert list(ds["sample"].values) == [3, 5, 9]
        for dim in ("y", "x"):
            np.testing.assert_array_equal(ds[dim].values, campaign_ds[dim].values)
            assert ds[dim].attrs["units"] == "delta"
            # the 8x8 layer: each cell covers 2x2 input cells of 1 delta
            np.testing.assert_allclose(ds[f"{dim}_layer"].values, np.arange(8) * 2.0 + 1.0)
            assert ds[f"{dim}_layer"].attrs["units"] == "delta"
        cam = ds["attribution"].sel(attribution_method="cam")
        assert cam.dims == ("sample", "interpolation", "y", "x")
        np.testing.assert_array_equal(cam.values, ds["attribution"].values[:, 0])
        # cam and gradient differ in units: the variable says so and names each
        assert ds["attribution"].attrs["units"] == MIXED_UNITS
        by_method = ds["attribution"].attrs["units_by_method"]
        assert by_method == f"cam: {METHODS['cam'].units}; gradient: {METHODS['gradient'].units}"
        assert ds["attribution_native"].attrs["units"] == METHODS["cam"].units
        np.testing.assert_array_equal(
            ds["simulated"].values, campaign_ds["max_vorticity"].values[[3, 5, 9]]
        )
    with h5py.File(out, "r") as f:  # positions and ids, not netCDF's placeholder zeros
        np.testing.assert_array_equal(f["x"][:], campaign_ds["x"].values)
        np.testing.assert_array_equal(f["y"][:], campaign_ds["y"].values)
        np.testing.assert_array_equal(f["sample"][:], [3, 5, 9])
        assert text(f["x"].attrs["units"]) == "delta"


def test_predictions_file(
    checkpoint: Path, smoke: Path, campaign_ds: xr.Dataset, tmp_path: Path
) -> None:
    # the same designs under other sample ids: the split's fingerprint still holds
    ids = campaign_ds["sample"].values * 10 + 1000
    relabelled = write_campaign(campaign_ds.assign_coords(sample=ids), tmp_path / "ids.nc")
    run_dir = tmp_path / "predict"
    args = ["predict", "--config", str(smoke), "--data.path", str(relabelled)]
    assert main([*args, "--run_dir", str(run_dir), "--ckpt_path", str(checkpoint)]) == 0
    path = run_dir / "version_0" / "predictions.nc"
    check_described(path, checkpoint, relabelled, "predict")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["sample"].values, np.arange(len(ids)))  # positions
        np.testing.assert_array_equal(ds["sample_id"].values, ids)  # the campaign's own ids
        assert ds.attrs["checkpoint"] == str(checkpoint)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["sample_id"][:], ids)
    # the maps and scores of the relabelled campaign carry its ids the same way
    maps = tmp_path / "maps.nc"
    explain = ["explain", "--checkpoint", str(checkpoint), "--data", str(relabelled)]
    assert main([*explain, "--out", str(maps), "--methods", "gradient", "--samples", "3,5"]) == 0
    with xr.open_dataset(maps, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["sample"].values, [3, 5])
        np.testing.assert_array_equal(ds["sample_id"].values, ids[[3, 5]])


@pytest.mark.slow
def test_scores_file(checkpoint: Path, campaign_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    quick = ["--samples", "4", "--steps", "4", "--sanity-samples", "2", "--batch-size", "2"]
    extra = ["--out", str(out), "--methods", "cam", "gradient", "--no-layer-sweep"]
    assert main([*args, *quick, *extra]) == 0
    check_described(out / "scores.nc", checkpoint, campaign_file, "evaluate")
    with xr.open_dataset(out / "scores.nc", engine="h5netcdf") as ds:
        cam = ds["gt_spearman_input"].sel(attribution_method="cam")
        assert cam.dims == ("sample",)
        np.testing.assert_array_equal(ds["sanity_sample"].values, ds["sample"].values[:2])
        np.testing.assert_array_equal(ds["sample_id"].values, ds["sample"].values)
        assert ds["cascade_similarity"].dims[0] == "attribution_method"
        assert ds["deletion_auc_smooth-wall"].attrs["units"] == "1"


def test_figures_are_outputs_too(
    checkpoint: Path, campaign_file: Path, tmp_path: Path, error_line
) -> None:
    """An earlier figure is refused like any output without --overwrite, before any work."""
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "design-00004.pdf").write_bytes(b"earlier")
    maps = tmp_path / "maps.nc"
    args = ["explain", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    plots = ["--out", str(maps), "--samples", "3:6", "--plots", str(figures)]
    assert main([*args, *plots, "--methods", "gradient"]) == 2
    error_line("design-00004.pdf", "--overwrite")
    assert not maps.exists()
    assert (figures / "design-00004.pdf").read_bytes() == b"earlier"
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "curves.png").write_bytes(b"earlier")
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    assert main([*args, "--out", str(scores), "--samples", "2"]) == 2
    error_line("curves.png", "--overwrite")
    assert sorted(p.name for p in scores.iterdir()) == ["curves.png"]
