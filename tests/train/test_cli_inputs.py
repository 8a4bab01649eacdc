"""Bad input files through the command line: exit status 2, one line naming the file, no output.

The campaign-level checks are tested in ``tests/data/test_campaign.py``; here each kind of bad
file goes through ``surrogate fit`` (or ``test``) to check that the message reaches the user
as one line, before Lightning creates a run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from train.cli import main


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _missing(ds: xr.Dataset, good: Path, path: Path) -> Path:
    return path


def _text(ds: xr.Dataset, good: Path, path: Path) -> Path:
    path.write_text("roughness,max_vorticity\n0.1,0.2\n")
    return path


def _truncated(ds: xr.Dataset, good: Path, path: Path) -> Path:
    payload = good.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    return path


def _nan_roughness(ds: xr.Dataset, good: Path, path: Path) -> Path:
    values = ds.roughness.values.copy()
    values[7, 3, 4] = np.nan
    return _write(ds.assign(roughness=ds.roughness.copy(data=values)), path)


def _short_max_vorticity(ds: xr.Dataset, good: Path, path: Path) -> Path:
    # h5netcdf would silently pad the short variable with fill values
    _write(ds, path)
    with h5py.File(path, "a") as f:
        del f["max_vorticity"]
        short = f.create_dataset("max_vorticity", data=np.ones(ds.sizes["sample"] - 2, "f4"))
        short.dims[0].attach_scale(f["sample"])
    return path


BAD_CAMPAIGNS: dict[str, tuple[Callable[[xr.Dataset, Path, Path], Path], str]] = {
    "missing": (_missing, "not found"),
    "text": (_text, "not an HDF5"),
    "truncated": (_truncated, "truncated"),
    "no-max-vorticity": (
        lambda ds, good, path: _write(ds.drop_vars("max_vorticity"), path),
        "'max_vorticity' is missing",
    ),
    "nan-roughness": (_nan_roughness, "NaN or Inf"),
    "float64-roughness": (
        lambda ds, good, path: _write(ds.assign(roughness=ds.roughness.astype("f8")), path),
        "float64",
    ),
    "mismatched-lengths": (_short_max_vorticity, "62 values along 'sample'"),
    "empty": (lambda ds, good, path: _write(ds.isel(sample=slice(0, 0)), path), "0 samples"),
    "wrong-dims": (
        lambda ds, good, path: _write(ds.transpose("sample", "x", "y"), path),
        "('sample', 'y', 'x')",
    ),
    "reversed-x": (
        lambda ds, good, path: _write(ds.assign_coords(x=ds.x.values[::-1]), path),
        "coordinate 'x' is not strictly increasing",
    ),
    "nan-y": (
        lambda ds, good, path: _write(
            ds.assign_coords(y=np.where(ds.y == ds.y[2], np.nan, ds.y)), path
        ),
        "coordinate 'y' has NaN",
    ),
    "uneven-x": (
        lambda ds, good, path: _write(
            ds.assign_coords(x=np.r_[ds.x.values[:-1], ds.x.values[-1] + 1]), path
        ),
        "coordinate 'x' is not uniformly spaced",
    ),
    "repeated-sample-ids": (
        lambda ds, good, path: _write(
            ds.assign_coords(sample=np.zeros(ds.sizes["sample"], "i8")), path
        ),
        "coordinate 'sample' repeats ids",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CAMPAIGNS))
def test_bad_campaign(
    case: str,
    campaign_ds: xr.Dataset,
    campaign_file: Path,
    smoke: Path,
    tmp_path: Path,
    error_line: Callable[..., str],
) -> None:
    make, expected = BAD_CAMPAIGNS[case]
    path = make(campaign_ds, campaign_file, tmp_path / f"{case}.nc")
    run_dir = tmp_path / "run"
    status = main(
        [
            "fit",
            "--config",
            str(smoke),
            "--data.path",
            str(path),
            "--data.simulate_samples",
            "null",
            "--run_dir",
            str(run_dir),
        ]
    )
    assert status == 2
    error_line("surrogate fit: error:", str(path), expected)
    assert not run_dir.exists()
    assert path.exists() == (case != "missing")  # nothing simulated in its place


def _torch_file(path: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize(
    ("command", "make", "expected"),
    [
        ("test", lambda path: path, "checkpoint not found"),
        ("test", lambda path: path.write_text("not a checkpoint\n") and path, "not a loadable"),
        ("validate", _torch_file, "not a surrogate checkpoint"),
        ("predict", lambda path: path.write_bytes(b"PK\x03\x04") and path, "not a loadable"),
    ],
    ids=["missing", "text", "foreign-torch-file", "broken-zip"],
)
def test_bad_checkpoint(
    command: str,
    make: Callable[[Path], Path],
    expected: str,
    campaign_file: Path,
    smoke: Path,
    tmp_path: Path,
    error_line: Callable[..., str],
) -> None:
    ckpt = make(tmp_path / "model.ckpt")
    run_dir = tmp_path / "run"
    status = main(
        [
            command,
            "--config",
            str(smoke),
            "--data.path",
            str(campaign_file),
            "--run_dir",
            str(run_dir),
            "--ckpt_path",
            str(ckpt),
        ]
    )
    assert status == 2
    error_line(f"surrogate {command}: error:", str(ckpt), expected)
    assert not run_dir.exists()


class _Payload:
    """Unpickling this makes a folder: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("force_unsafe", [False, True], ids=["default", "forced-unsafe-env"])
def test_a_poisoned_last_checkpoint_in_a_run_folder_is_never_unpickled(
    force_unsafe: bool,
    campaign_file: Path,
    smoke: Path,
    tmp_path: Path,
    error_line: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--ckpt_path last`` resolves to the run folder's file and reads it like any path:
    with weights_only=True, also when the environment asks torch for unsafe loads."""
    if force_unsafe:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    poisoned = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "hook": _Payload(marker)}, poisoned)
    args = ["--config", str(smoke), "--data.path", str(campaign_file), "--run_dir", str(run_dir)]
    for command in ("fit", "test"):
        assert main([command, *args, "--ckpt_path", "last"]) == 2
        error_line(f"surrogate {command}: error:", str(poisoned))
        assert not marker.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints"]  # no run started


def test_ckpt_path_keywords_name_one_file_or_say_why(
    campaign_file: Path, smoke: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    run_dir = tmp_path / "run"
    args = ["--config", str(smoke), "--data.path", str(campaign_file), "--run_dir", str(run_dir)]
    assert main(["test", *args, "--ckpt_path", "best"]) == 2
    error_line("--ckpt_path best", "found none", str(run_dir / "checkpoints"))
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("best-epoch001.ckpt", "best-epoch004.ckpt"):
        _torch_file(run_dir / "checkpoints" / name)
    assert main(["test", *args, "--ckpt_path", "best"]) == 2
    error_line("--ckpt_path best", "found 2 files", "best-epoch004.ckpt")
    assert main(["test", *args, "--ckpt_path", "hpc"]) == 2
    error_line("--ckpt_path hpc", "not supported")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "config file not found"),
        (b"\xed\x9f\x00binary", "not a text file"),
        (b"model: [1, 2\n", "not valid YAML at line 2"),
        (b"- a list\n", "expected a YAML mapping"),
        (b"model:\n  lrr: 0.1\n", "does not accept option 'model.lrr'"),
        (b"model:\n  lr: abc\n", "Got value: abc"),
    ],
    ids=["missing", "binary", "broken-yaml", "not-a-mapping", "unknown-key", "wrong-type"],
)
def test_bad_config_files_are_one_line_naming_the_file(
    content: bytes | None, expected: str, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    config = tmp_path / "config.yaml"
    if content is not None:
        config.write_bytes(content)
    run_dir = tmp_path / "run"
    assert main(["fit", "--config", str(config), "--run_dir", str(run_dir)]) == 2
    error_line("surrogate fit: error:", str(config), expected)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--data.batch_size", "0"], "--data.batch_size 0: expected at least 1"),
        (["--data.fractions", "[0.5, 0.5, 0.5]"], "fractions >= 0 that sum to 1"),
        (["--data.fractions", "[1.0, 0.0, 0.0]"], "the val split needs at least 1"),
        (["--trainer.max_epochs", "-5"], "`max_epochs` must be a non-negative integer"),
        (["--model.lr", "-1"], "expected a learning rate > 0"),
        (["--model.widths", "[0]"], "widths must be positive channel counts"),
        (["--data.size", "2", "--data.path", "absent.nc"], "--data.size 2: expected at least 4"),
    ],
    ids=["batch-size", "fractions-sum", "no-validation", "max-epochs", "lr", "widths", "size"],
)
def test_settings_out_of_range_are_one_line(
    extra: list[str], expected: str, smoke: Path, campaign_file: Path, tmp_path: Path,
    error_line: Callable[..., str],
) -> None:  # fmt: skip
    run_dir = tmp_path / "run"
    args = ["--config", str(smoke), "--data.path", str(campaign_file), "--run_dir", str(run_dir)]
    assert main(["fit", *args, *extra]) == 2
    error_line(expected)
    assert not run_dir.exists()


def test_a_campaign_too_small_to_split_is_one_line(
    campaign_ds: xr.Dataset, smoke: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    one = _write(campaign_ds.isel(sample=slice(0, 1)), tmp_path / "one.nc")
    run_dir = tmp_path / "run"
    args = ["--config", str(smoke), "--data.path", str(one), "--run_dir", str(run_dir)]
    assert main(["fit", *args]) == 2
    error_line(str(one), "1 designs split as train 1, val 0, test 0", "larger campaign")
    assert not run_dir.exists()
