"""The ``surrogate`` command end to end: simulate, fit, test, resume, demo and the configs.

Everything runs on the smoke config (64 samples of 16x16, widths [4, 8]) in temporary folders.
"""

from __future__ import annotations

import csv
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import data.campaign as campaign
from data.campaign import open_campaign, write_campaign
from data.datamodule import split_indices
from surrogate import load_model
from surrogate.module import SurrogateModule
from train.cli import LIGHTNING_COMMANDS, main
from train.lightning import run_lightning

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN_BATCHES = 4  # 52 training samples in batches of 16


class Run(NamedTuple):
    campaign: Path
    run_dir: Path
    version: Path
    best: Path


def fit_args(smoke: Path, campaign_path: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(smoke),
        "--data.path",
        str(campaign_path),
        "--run_dir",
        str(run_dir),
        *extra,
    ]


def epochs_logged(version: Path) -> set[int]:
    with (version / "metrics.csv").open() as f:
        return {int(row["epoch"]) for row in csv.DictReader(f) if row["epoch"]}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, smoke: Path) -> Run:
    """``surrogate fit`` on the smoke config; the campaign is simulated on the way."""
    root = tmp_path_factory.mktemp("fit")
    campaign_path, run_dir = root / "campaign.nc", root / "run"
    assert main(["fit", *fit_args(smoke, campaign_path, run_dir)]) == 0
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    return Run(campaign_path, run_dir, run_dir / "version_0", best)


@pytest.fixture(scope="module")
def tested(fitted: Run, smoke: Path) -> Path:
    """``surrogate test --ckpt_path <best>``; returns the test run's log folder."""
    args = fit_args(smoke, fitted.campaign, fitted.run_dir, "--ckpt_path", str(fitted.best))
    assert main(["test", *args]) == 0
    (metrics,) = fitted.run_dir.glob("version_*/test_metrics.json")
    return metrics.parent


# --- overview and dispatch --------------------------------------------------------------


def test_no_arguments_prints_overview(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: surrogate")
    for command in ("simulate", "demo", *LIGHTNING_COMMANDS):
        assert f"  {command} " in out


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: surrogate" in capsys.readouterr().out


def test_unknown_command(error_line: Callable[..., str]) -> None:
    assert main(["frobnicate"]) == 2
    error_line("'frobnicate'", "simulate", "fit")


def test_unknown_lightning_option_is_one_line_not_a_usage_dump(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fit", "--no_such_option", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unrecognized arguments: --no_such_option 1" in err[0]


# --- simulate -----------------------------------------------------------------------------


def simulate_args(out: Path, seed: int = 3, *extra: str) -> list[str]:
    return [
        "simulate",
        "--samples",
        "20",
        "--size",
        "16",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_simulate_writes_a_valid_campaign(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c.nc"
    assert main(simulate_args(out)) == 0
    assert "wrote 20 samples" in capsys.readouterr().out
    with open_campaign(out) as ds:
        assert ds.sizes == {"sample": 20, "y": 16, "x": 16}
        assert ds.attrs["seed"] == 3


def test_simulate_same_seed_same_campaign(tmp_path: Path) -> None:
    paths = [tmp_path / "a.nc", tmp_path / "b.nc", tmp_path / "other.nc"]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert main(simulate_args(path, seed)) == 0
    a, b, other = (open_campaign(p).roughness.values for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other)


def test_simulate_refuses_existing_output(tmp_path: Path, error_line) -> None:
    out = tmp_path / "c.nc"
    assert main(simulate_args(out)) == 0
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    assert main(simulate_args(out, 5)) == 2
    error_line(str(out), "--overwrite")
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    assert main(simulate_args(out, 5, "--overwrite")) == 0
    assert open_campaign(out).attrs["seed"] == 5


def test_simulate_creates_its_folder_but_not_under_a_file(tmp_path: Path, error_line) -> None:
    out = tmp_path / "campaigns" / "c.nc"  # what the README runs on a fresh clone
    assert main(simulate_args(out)) == 0
    assert out.is_file()
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sub" / "c.nc"
    assert main(simulate_args(out)) == 2
    error_line(str(out), "file is a file; expected an output folder")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--samples", "0"], "argument --samples: expected an integer >= 1, got 0"),
        (["--samples", "abc"], "argument --samples: expected an integer, got 'abc'"),
        (["--size", "2"], "argument --size: expected an integer between 8 and 1024, got 2"),
        (["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["--samples", "1000000000"], "GiB free in"),
    ],
    ids=["samples", "not-a-number", "size", "seed", "too-large-for-the-disk"],
)
def test_simulate_bad_argument_is_one_line(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *args, "--out", str(tmp_path / "c.nc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert expected in err[0]
    assert list(tmp_path.iterdir()) == []


def _fail_after_first_chunk(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    real = campaign.simulate_chunks

    def failing(*args, **kwargs):
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise exc

    monkeypatch.setattr(campaign, "simulate_chunks", failing)


def test_interrupted_simulate_leaves_nothing(tmp_path: Path, monkeypatch, error_line) -> None:
    _fail_after_first_chunk(monkeypatch, KeyboardInterrupt())
    assert main(simulate_args(tmp_path / "c.nc", 3, "--chunk-size", "5")) == 130
    error_line("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_failed_simulate_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    _fail_after_first_chunk(monkeypatch, RuntimeError("solver blew up"))
    with pytest.raises(RuntimeError, match="blew up"):
        main(simulate_args(tmp_path / "c.nc", 3, "--chunk-size", "5"))
    assert list(tmp_path.iterdir()) == []


# --- fit and test -------------------------------------------------------------------------


def test_fit_writes_checkpoints_and_run_files(fitted: Run) -> None:
    assert (fitted.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert fitted.best.name.startswith("best-epoch")
    for name in ("config.yaml", "metrics.csv", "split.json"):
        assert (fitted.version / name).is_file(), name
    assert epochs_logged(fitted.version) == {0, 1}
    # last.ckpt is the final epoch whether or not it was the best (resume must resume)
    last = torch.load(fitted.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 8)
    config = yaml.safe_load((fitted.version / "config.yaml").read_text())
    assert config["model"]["widths"] == [4, 8]
    assert config["data"]["path"] == str(fitted.campaign)
    with open_campaign(fitted.campaign) as ds:
        assert ds.sizes["sample"] == 64


def test_last_checkpoint_follows_every_epoch(
    smoke: Path, campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no improvement after epoch 0, best stays at epoch 0 but last must move on."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    original = ModelCheckpoint.check_monitor_top_k

    def no_improvement_after_first(self, trainer, current=None):  # type: ignore[no-untyped-def]
        return trainer.current_epoch == 0 and original(self, trainer, current)

    monkeypatch.setattr(ModelCheckpoint, "check_monitor_top_k", no_improvement_after_first)
    run_dir = tmp_path / "run"
    assert main(["fit", *fit_args(smoke, campaign_file, run_dir)]) == 0
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_split_is_saved_disjoint_and_complete(fitted: Run) -> None:
    split = json.loads((fitted.version / "split.json").read_text())
    assert split["campaign"] == str(fitted.campaign)
    parts = {k: set(split[k]) for k in ("train", "val", "test")}
    assert {k: len(v) for k, v in parts.items()} == {"train": 52, "val": 6, "test": 6}
    assert set.union(*parts.values()) == set(range(64))
    expected = split_indices(64, (0.8, 0.1, 0.1), seed=0)
    for name, indices in expected.items():
        assert split[name] == indices.tolist()


def test_test_writes_metrics_and_plots(tested: Path) -> None:
    metrics = json.loads((tested / "test_metrics.json").read_text())
    assert {"test/r2", "test/rmse", "test/mae"} <= set(metrics)
    assert metrics["test/samples"] == 6
    assert metrics["test/rmse"] >= metrics["test/mae"] > 0
    for name in ("parity.png", "residuals.png"):
        assert (tested / name).read_bytes()[:8] == PNG_MAGIC, name
    for name in ("parity.pdf", "residuals.pdf"):
        assert (tested / name).read_bytes()[:5] == b"%PDF-", name


def test_saved_predictions_match_load_model(fitted: Run, tested: Path) -> None:
    saved = np.load(tested / "test_predictions.npz")
    test_idx = json.loads((fitted.version / "split.json").read_text())["test"]
    with open_campaign(fitted.campaign) as ds:
        roughness = ds.roughness.values[test_idx]
        target = ds.max_vorticity.values[test_idx]
    np.testing.assert_array_equal(saved["simulated"], target)
    with torch.no_grad():
        predicted = load_model(fitted.best)(torch.from_numpy(roughness)[:, None]).numpy()
    np.testing.assert_allclose(saved["predicted"], predicted, rtol=0, atol=1e-5)


def test_test_uses_the_checkpoint_split(fitted: Run, smoke: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = fit_args(
        smoke, fitted.campaign, run_dir, "--data.split_seed", "5", "--ckpt_path", str(fitted.best)
    )
    assert main(["test", *args]) == 0
    saved = np.load(run_dir / "version_0" / "test_predictions.npz")
    test_idx = json.loads((fitted.version / "split.json").read_text())["test"]
    with open_campaign(fitted.campaign) as ds:
        np.testing.assert_array_equal(saved["simulated"], ds.max_vorticity.values[test_idx])


def test_test_refuses_the_checkpoint_split_on_another_campaign(
    fitted: Run, smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded test indices would pick other designs of another campaign of the same grid."""
    with open_campaign(fitted.campaign) as ds:
        other = write_campaign(ds.isel(sample=slice(None, None, -1)).load(), tmp_path / "rev.nc")
    run_dir = tmp_path / "run"
    args = fit_args(smoke, other, run_dir, "--ckpt_path", str(fitted.best))
    assert main(["test", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "rev.nc: not the campaign" in err[0]
    assert "Traceback" not in err[0]


# --- resume -------------------------------------------------------------------------------


def test_predict_writes_every_sample(fitted: Run, smoke: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "predict"
    args = fit_args(smoke, fitted.campaign, run_dir, "--ckpt_path", str(fitted.best))
    assert main(["predict", *args]) == 0
    with xr.open_dataset(run_dir / "version_0" / "predictions.nc", engine="h5netcdf") as ds:
        predicted = ds["predicted_max_vorticity"].values
        assert ds["predicted_max_vorticity"].attrs["units"] == "U_e/delta"
    with open_campaign(fitted.campaign) as campaign:
        roughness = campaign.roughness.values
    with torch.no_grad():
        expected = load_model(fitted.best)(torch.from_numpy(roughness)[:, None]).numpy()
    assert predicted.shape == (64,)
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-5)


def test_resume_after_interrupt(
    tmp_path: Path, smoke: Path, campaign_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted: list[int] = []

    def interrupt_once(self: SurrogateModule) -> None:
        if self.current_epoch == 1 and not interrupted:
            interrupted.append(self.current_epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(SurrogateModule, "on_train_epoch_end", interrupt_once)
    run_dir = tmp_path / "run"
    args = fit_args(smoke, campaign_file, run_dir, "--trainer.max_epochs", "3")
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exc:  # Lightning's graceful shutdown: sys.exit(1)
            main(["fit", *args])
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C while shutting down
    assert exc.value.code == 1
    assert interrupted == [1]
    assert 2 not in epochs_logged(run_dir / "version_0")

    assert main(["fit", *args, "--ckpt_path", "last"]) == 0
    resumed = epochs_logged(run_dir / "version_1")
    assert 2 in resumed
    assert min(resumed) >= 1  # continued, not restarted from epoch 0
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2  # index of the last finished epoch: three epochs in all
    assert last["global_step"] == 3 * TRAIN_BATCHES


# --- demo and configs ---------------------------------------------------------------------


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--samples", "64", "--size", "16", "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test R2 =" in printed
    (version,) = (out / "run").glob("version_*")
    metrics = json.loads((version / "test_metrics.json").read_text())
    assert metrics["test/samples"] == 6
    assert (version / "parity.png").read_bytes()[:8] == PNG_MAGIC
    with xr.open_dataset(out / "explain" / "maps.nc", engine="h5netcdf") as maps:
        assert maps.sizes["sample"] == 6
        # a 16x16 grid leaves a 1x1 last map, so Grad-CAM stands in for CAM
        methods = ["gradcam", "hirescam", "layercam", "integrated-gradients"]
        assert list(maps["attribution_method"].values) == methods
    figures = sorted((out / "explain" / "plots").glob("design-*.png"))
    assert len(figures) == 4
    assert figures[0].read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((out / "evaluate" / "summary.json").read_text())
    assert summary["settings"]["samples"] == 6  # the whole (small) test split
    assert "recommendation" in summary
    assert {"integrated-gradients", "abs-height", "random-map"} <= set(summary["table"])
    assert "recommended method:" in printed


def _as_plain(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


@pytest.mark.parametrize("name", ["default", "cnn", "demo", "smoke"])
def test_config_instantiates(name: str, tmp_path: Path) -> None:
    """Each config builds the model, data module and trainer (nothing is simulated or run)."""
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    cli = run_lightning(
        [
            "--config",
            str(REPO / "configs" / f"{name}.yaml"),
            "--data.path",
            str(tmp_path / "absent.nc"),
            "--run_dir",
            str(tmp_path / "run"),
        ],
        run=False,
    )
    for key, value in config["model"].items():
        assert _as_plain(cli.model.hparams[key]) == value, key
    for key, value in config["data"].items():
        if key != "path":
            assert _as_plain(cli.datamodule.hparams[key]) == value, key
    size = config["data"]["size"]
    assert tuple(cli.model.hparams["grid_shape"]) == (size, size)
    assert cli.trainer.max_epochs == config["trainer"]["max_epochs"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["default", "cnn", "demo"])
def test_config_prints(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_lightning(["fit", "--config", str(REPO / "configs" / f"{name}.yaml"), "--print_config"])
    assert exc.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    assert printed["run_dir"] == config["run_dir"]
    assert printed["data"]["path"] == config["data"]["path"]
    for key, value in config["model"].items():
        assert printed["model"][key] == value, key
