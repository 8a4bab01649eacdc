"""Run folders through ``surrogate fit``/``test``/``predict``/``demo``: an existing run is never
replaced silently, a resume may extend the epochs, the user's logger is kept, and a checkpoint
is refused on a campaign it does not fit. Each refusal is one line on stderr, exit status 2.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from data.campaign import open_campaign, simulate_to_file, write_campaign
from train.cli import main


def fit_args(smoke: Path, campaign: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--config", str(smoke), "--data.path", str(campaign), "--run_dir", str(run_dir), *extra]


def epochs_logged(csv_path: Path) -> set[int]:
    with csv_path.open() as f:
        return {int(row["epoch"]) for row in csv.DictReader(f) if row["epoch"]}


def checkpoint_names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, smoke: Path, campaign_file: Path) -> Path:
    """A finished two-epoch smoke fit; tests that add to it copy it first."""
    run_dir = tmp_path_factory.mktemp("fitted") / "run"
    assert main(["fit", *fit_args(smoke, campaign_file, run_dir)]) == 0
    return run_dir


# --- fit into an existing run folder --------------------------------------------------------


def test_fit_refuses_a_folder_that_holds_a_run(
    run: Path, smoke: Path, campaign_file: Path, error_line: Callable[..., str]
) -> None:
    last = run / "checkpoints" / "last.ckpt"
    before = (last.read_bytes(), sorted(p.name for p in run.iterdir()))
    assert main(["fit", *fit_args(smoke, campaign_file, run)]) == 2
    error_line("--run_dir", str(run), "--ckpt_path last", "--overwrite")
    assert (last.read_bytes(), sorted(p.name for p in run.iterdir())) == before


def test_an_unwritable_run_folder_is_refused_before_any_work(
    smoke: Path, campaign_file: Path, tmp_path: Path, monkeypatch, error_line
) -> None:
    import os

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    real = os.access  # root writes everywhere: let the check see an ordinary user's view
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real(p, m))
    for command in ("fit", "test"):
        args = fit_args(smoke, campaign_file, locked / "run")
        if command == "test":
            args += ["--ckpt_path", str(tmp_path / "none.ckpt")]
        assert main([command, *args]) == 2
        error_line("--run_dir", "locked is not writable")
    assert list(locked.iterdir()) == []


def test_a_checkpoint_whose_save_fails_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smoke: Path, campaign_file: Path
) -> None:
    """Lightning writes checkpoints through an atomic plug-in: a save that dies half-way (a
    kill, a full disk) leaves the previous last.ckpt, the resume point, whole."""
    import lightning.fabric.plugins.io.torch_io as torch_io

    from train.lightning import run_lightning

    cli = run_lightning(fit_args(smoke, campaign_file, tmp_path / "run"), run=False)
    io = cli.trainer.strategy.checkpoint_io  # what fit saves its checkpoints with
    assert type(io).__name__ == "AtomicCheckpointIO"
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.ones(3)}, path)
    before = path.read_bytes()

    def dies_half_way(checkpoint, filepath):  # Lightning's writer, killed mid-write
        Path(filepath).write_bytes(before[: len(before) // 2])
        raise OSError("the process died while saving")

    monkeypatch.setattr(torch_io, "_atomic_save", dies_half_way)
    with pytest.raises(OSError, match="died"):
        io.save_checkpoint({"weights": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["last.ckpt"]
    with pytest.raises(OSError, match="died"):  # what Lightning's own writer leaves
        torch_io.TorchCheckpointIO().save_checkpoint({"weights": torch.zeros(3)}, path)
    assert path.read_bytes() != before


def test_fit_refuses_a_folder_with_only_logs(
    smoke: Path, campaign_file: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    (tmp_path / "run" / "version_0").mkdir(parents=True)
    assert main(["fit", *fit_args(smoke, campaign_file, tmp_path / "run")]) == 2
    error_line("--run_dir", "version_0")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["version_0"]


def test_overwrite_with_ckpt_path_is_refused(
    run: Path, smoke: Path, campaign_file: Path, error_line: Callable[..., str]
) -> None:
    args = fit_args(smoke, campaign_file, run, "--overwrite", "--ckpt_path", "last")
    assert main(["fit", *args]) == 2
    error_line("--overwrite", "--ckpt_path last", "choose one")


def test_overwrite_starts_afresh_with_one_best_checkpoint(
    run: Path, smoke: Path, campaign_file: Path, tmp_path: Path
) -> None:
    import shutil

    run_dir = Path(shutil.copytree(run, tmp_path / "run"))
    stale = run_dir / "checkpoints" / "best-epoch099.ckpt"
    stale.write_bytes(b"stale")
    args = fit_args(smoke, campaign_file, run_dir, "--trainer.max_epochs", "1")
    assert main(["fit", *args, "--overwrite"]) == 0
    names = checkpoint_names(run_dir)
    assert names == ["best-epoch000.ckpt", "last.ckpt"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 4)  # the new run's, not the old one's
    assert epochs_logged(run_dir / "version_1" / "metrics.csv") == {0}  # old logs are kept
    assert (run_dir / "version_0" / "metrics.csv").is_file()
    assert main(["test", *fit_args(smoke, campaign_file, run_dir, "--ckpt_path", "best")]) == 0


# --- resume ---------------------------------------------------------------------------------


def test_resume_with_more_epochs_continues(
    run: Path, smoke: Path, campaign_file: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    import shutil

    run_dir = Path(shutil.copytree(run, tmp_path / "run"))
    args = fit_args(smoke, campaign_file, run_dir, "--ckpt_path", "last")
    assert main(["fit", *args, "--trainer.max_epochs", "4"]) == 0
    assert epochs_logged(run_dir / "version_1" / "metrics.csv") == {2, 3}
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 16)
    assert last["lr_schedulers"][0]["total_steps"] == 16  # the schedule of the new total
    versions = sorted(p.name for p in run_dir.glob("version_*"))
    assert main(["fit", *args, "--trainer.max_epochs", "4"]) == 2
    error_line("--trainer.max_epochs 4", "already trained 4 epochs", "last.ckpt")
    assert sorted(p.name for p in run_dir.glob("version_*")) == versions  # no run started


# --- the user's logger ----------------------------------------------------------------------


def test_a_user_logger_is_kept(smoke: Path, campaign_file: Path, tmp_path: Path) -> None:
    run_dir, elsewhere = tmp_path / "run", tmp_path / "logs"
    logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
    logger += ["--trainer.logger.save_dir", str(elsewhere), "--trainer.max_epochs", "1"]
    assert main(["fit", *fit_args(smoke, campaign_file, run_dir, *logger)]) == 0
    version = elsewhere / "lightning_logs" / "version_0"
    assert epochs_logged(version / "metrics.csv") == {0}
    config = yaml.safe_load((version / "config.yaml").read_text())
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(elsewhere)
    assert checkpoint_names(run_dir) == ["best-epoch000.ckpt", "last.ckpt"]
    assert not list(run_dir.glob("version_*"))


def test_without_a_logger_run_files_stay_in_the_run_folder(
    smoke: Path, campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_dir = tmp_path / "run"
    extra = ("--trainer.logger", "false", "--trainer.max_epochs", "1")
    assert main(["fit", *fit_args(smoke, campaign_file, run_dir, *extra)]) == 0
    for name in ("config.yaml", "split.json", "fit_summary.json"):
        assert (run_dir / name).is_file(), name
    assert list(cwd.iterdir()) == []


# --- a checkpoint on a campaign it does not fit ---------------------------------------------


@pytest.mark.parametrize("command", ["test", "predict"])
def test_checkpoint_on_another_grid_is_refused(
    command: str, run: Path, smoke: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    other = simulate_to_file(tmp_path / "grid8.nc", 16, size=8, seed=0, progress=False)
    ckpt = run / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "run"
    assert main([command, *fit_args(smoke, other, run_dir, "--ckpt_path", str(ckpt))]) == 2
    error_line(str(other), str(ckpt), "8x8", "16x16")
    assert not run_dir.exists()


@pytest.mark.parametrize("command", ["test", "validate"])
def test_checkpoint_split_on_another_campaign_is_refused_up_front(
    command: str,
    run: Path,
    smoke: Path,
    campaign_file: Path,
    tmp_path: Path,
    error_line: Callable[..., str],
) -> None:
    with open_campaign(campaign_file) as ds:
        other = write_campaign(ds.isel(sample=slice(None, None, -1)).load(), tmp_path / "rev.nc")
    ckpt = run / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "run"
    assert main([command, *fit_args(smoke, other, run_dir, "--ckpt_path", str(ckpt))]) == 2
    error_line(f"{other}: not the campaign", str(ckpt))
    assert not run_dir.exists()  # refused before Lightning made a run folder


def test_predict_on_another_campaign_of_the_same_grid(
    run: Path, smoke: Path, campaign_file: Path, tmp_path: Path
) -> None:
    with open_campaign(campaign_file) as ds:
        other = write_campaign(ds.isel(sample=slice(None, None, -1)).load(), tmp_path / "rev.nc")
    ckpt = run / "checkpoints" / "last.ckpt"
    args = fit_args(smoke, other, tmp_path / "run", "--ckpt_path", str(ckpt))
    assert main(["predict", *args]) == 0


# --- demo re-runs ---------------------------------------------------------------------------


def test_demo_refuses_a_folder_that_is_not_empty(
    tmp_path: Path, error_line: Callable[..., str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["demo", "--out", str(tmp_path), "--samples", "64", "--size", "16"]) == 2
    error_line("--out", str(tmp_path), "--overwrite")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_demo_campaign_is_reused_only_when_it_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from train.demo import prepare_campaign

    path = tmp_path / "campaign.nc"
    assert prepare_campaign(path, 20, 16, 3).startswith("simulated")
    assert prepare_campaign(path, 20, 16, 3).startswith(f"reusing {path}")
    for samples, size, seed in ((21, 16, 3), (21, 8, 3), (21, 8, 4)):
        assert prepare_campaign(path, samples, size, seed).startswith("simulated")
        with open_campaign(path) as ds:
            assert (ds.sizes["sample"], ds.sizes["y"], ds.attrs["seed"]) == (samples, size, seed)
    path.write_text("damaged\n")
    assert prepare_campaign(path, 20, 16, 3).startswith("simulated")


@pytest.mark.slow
def test_demo_rerun_with_overwrite_leaves_one_best_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--samples", "64", "--size", "16", "--plot-samples", "1"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert f"reusing {out / 'campaign.nc'}" in printed
    assert len(list((out / "run" / "checkpoints").glob("best-*.ckpt"))) == 1


def test_ctrl_c_during_fit_exits_130_and_keeps_a_loadable_resume_point(
    smoke: Path, campaign_file: Path, tmp_path: Path
) -> None:
    """Lightning shuts a run down after Ctrl-C and calls sys.exit(1); the command says it
    was interrupted in one line, exits 130, and last.ckpt still resumes."""
    import signal
    import subprocess
    import sys
    import time

    from surrogate.checkpoint import load_model

    run_dir = tmp_path / "run"
    args = fit_args(smoke, campaign_file, run_dir, "--trainer.max_epochs", "100000")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from train.cli import console_main; console_main()", "fit", *args],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "surrogate fit: interrupted; outputs left as they were"
    load_model(last)
