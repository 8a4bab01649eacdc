"""A careless or hostile user, through the real entry point: every refusal is exit status 2,
exactly one line on stderr naming the file or option, no traceback, no file created and no
input changed (compared by sha256 over the whole workspace, inputs included).

Each case gets a fresh workspace holding a copy of the smoke campaign and checkpoint, a
campaign on another grid, a reordered campaign (another campaign for the checkpoint's split),
an earlier output and a plain file; ``{name}`` in the arguments is a path in it.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import xarray as xr

from data.campaign import simulate_campaign, write_campaign
from train.cli import main


def tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (folders listed too, as themselves)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "folder"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def workspace(
    tmp_path: Path, checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset
) -> Path:
    shutil.copy(campaign_file, tmp_path / "campaign.nc")
    shutil.copy(checkpoint, tmp_path / "model.ckpt")
    write_campaign(simulate_campaign(8, size=8, seed=1), tmp_path / "grid8.nc")
    write_campaign(campaign_ds.isel(sample=slice(None, None, -1)), tmp_path / "reordered.nc")
    (tmp_path / "earlier.nc").write_bytes(b"an earlier output")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "folder.nc").mkdir()
    return tmp_path


EXPLAIN = ["explain", "--checkpoint", "{model.ckpt}", "--data", "{campaign.nc}"]
EVALUATE = ["evaluate", "--checkpoint", "{model.ckpt}", "--data", "{campaign.nc}"]
SIMULATE = ["simulate", "--samples", "8", "--size", "8"]
TEST = ["test", "--config", "{smoke}", "--data.path", "{campaign.nc}", "--run_dir", "{run}"]

# (arguments, parts of the one line)
CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # simulate
    "simulate-size": ([*SIMULATE[:3], "--size", "2", "--out", "{new.nc}"], ("--size",)),
    "simulate-seed": ([*SIMULATE, "--seed", "-1", "--out", "{new.nc}"], ("--seed",)),
    "simulate-existing": ([*SIMULATE, "--out", "{earlier.nc}"], ("earlier.nc", "--overwrite")),
    "simulate-out-is-a-folder": (
        [*SIMULATE, "--out", "{a-folder}", "--overwrite"],
        ("a-folder", "is a folder"),
    ),
    "simulate-under-a-file": ([*SIMULATE, "--out", "{a-file}/c.nc"], ("a-file", "is a file")),
    "simulate-terabytes": (
        ["simulate", "--samples", "100000000", "--size", "1024", "--out", "{new.nc}"],
        ("new.nc", "needs about"),
    ),
    # explain
    "explain-out-is-the-campaign": (
        [*EXPLAIN, "--out", "{campaign.nc}", "--overwrite"],
        ("campaign.nc", "is an input"),
    ),
    "explain-out-is-a-folder": (
        [*EXPLAIN, "--out", "{a-folder}", "--overwrite"],
        ("--out must be a .nc file",),
    ),
    "explain-out-is-a-folder-named-nc": (
        [*EXPLAIN, "--out", "{folder.nc}", "--overwrite"],
        ("folder.nc", "is a folder"),
    ),
    "explain-out-folder-missing": (
        [*EXPLAIN, "--out", "{missing}/maps.nc"],
        ("maps.nc", "does not exist"),
    ),
    "explain-existing": ([*EXPLAIN, "--out", "{earlier.nc}"], ("earlier.nc", "--overwrite")),
    "explain-samples": ([*EXPLAIN, "--out", "{m.nc}", "--samples", "500"], ("--samples",)),
    "explain-method": ([*EXPLAIN, "--out", "{m.nc}", "--methods", "occlusion"], ("occlusion",)),
    "explain-batch-size": ([*EXPLAIN, "--out", "{m.nc}", "--batch-size", "0"], ("--batch-size",)),
    "explain-grid": (
        [*EXPLAIN[:3], "--data", "{grid8.nc}", "--out", "{m.nc}"],
        ("grid8.nc", "8x8", "16x16"),
    ),
    "explain-split-of-another-campaign": (
        [*EXPLAIN[:3], "--data", "{reordered.nc}", "--out", "{m.nc}", "--samples", "test"],
        ("reordered.nc", "split was drawn from"),
    ),
    "explain-checkpoint-is-text": (
        ["explain", "--checkpoint", "{a-file}", "--data", "{campaign.nc}", "--out", "{m.nc}"],
        ("a-file", "not a loadable surrogate checkpoint"),
    ),
    # evaluate
    "evaluate-out-is-a-file": ([*EVALUATE, "--out", "{a-file}"], ("a-file", "is a file")),
    "evaluate-steps": ([*EVALUATE, "--out", "{scores}", "--steps", "0"], ("--steps",)),
    "evaluate-road": (
        [*EVALUATE, "--out", "{scores}", "--road-percentages", "150"],
        ("--road-percentages",),
    ),
    "evaluate-split-of-another-campaign": (
        [*EVALUATE[:3], "--data", "{reordered.nc}", "--out", "{scores}"],
        ("reordered.nc", "split was drawn from"),
    ),
    # test / predict
    "test-best-without-a-fit": ([*TEST, "--ckpt_path", "best"], ("--ckpt_path best",)),
    "predict-grid": (
        ["predict", *TEST[1:4], "{grid8.nc}", *TEST[5:], "--ckpt_path", "{model.ckpt}"],
        ("grid8.nc", "8x8"),
    ),
    "test-typo-key": (
        [*TEST, "--ckpt_path", "{model.ckpt}", "--trainer.max_epochz", "3"],
        ("max_epochz",),
    ),
    # review
    "review-design-is-text": (
        [
            "review",
            "--checkpoint",
            "{model.ckpt}",
            "--design",
            "{a-file}",
            "--out",
            "{rv}",
            "--campaign",
            "{campaign.nc}",
        ],
        ("a-file",),
    ),
    "review-level": (
        [
            "review",
            "--checkpoint",
            "{model.ckpt}",
            "--design",
            "{campaign.nc}",
            "--out",
            "{rv}",
            "--campaign",
            "{campaign.nc}",
            "--level",
            "2",
        ],
        ("--level",),
    ),
    "review-another-grid": (
        [
            "review",
            "--checkpoint",
            "{model.ckpt}",
            "--design",
            "{grid8.nc}",
            "--out",
            "{rv}",
            "--campaign",
            "{campaign.nc}",
        ],
        ("grid8.nc", "8x8"),
    ),
    # ingest
    "ingest-mapping-not-a-mapping": (
        ["ingest", "{a-folder}", "--mapping", "{a-file}", "--out", "{c.nc}"],
        ("a-file",),
    ),
    # demo
    "demo-out-is-a-file": (["demo", "--out", "{a-file}"], ("a-file",)),
    "demo-size": (["demo", "--out", "{d}", "--size", "4"], ("--size",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refusal_is_one_line_and_leaves_everything_as_it_was(
    case: str, workspace: Path, smoke: Path, error_line: Callable[..., str]
) -> None:
    args, parts = CASES[case]
    names = {"smoke": str(smoke)}

    def fill(arg: str) -> str:
        if arg.startswith("{"):
            key, _, rest = arg[1:].partition("}")
            return names.get(key, str(workspace / key)) + rest
        return arg

    before = tree(workspace)
    assert main([fill(a) for a in args]) == 2
    error_line(*[fill(p) if p.startswith("{") else p for p in parts])
    assert tree(workspace) == before


def test_a_disk_that_fills_while_evaluate_writes_is_one_line_and_keeps_earlier_scores(
    workspace: Path,
) -> None:
    """Through a real process with a file-size limit smaller than scores.nc, found after the
    first files of the set are written: one line naming the output, a non-zero exit, no
    crash (HDF5 is not started on a file that will not fit), and the earlier results whole."""
    import resource
    import subprocess
    import sys

    scores = workspace / "scores"
    scores.mkdir()
    (scores / "scores.nc").write_bytes(b"earlier scores")
    before = tree(workspace)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))

    args = [str(workspace / a[1:-1]) if a.startswith("{") else a for a in EVALUATE]
    proc = subprocess.run(
        [sys.executable, "-c", "from train.cli import console_main; console_main()", *args,
         "--out", str(scores), "--samples", "4", "--steps", "4", "--sanity-samples", "2",
         "--overwrite"],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    assert proc.returncode in (1, 2), proc.stderr
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith(f"surrogate evaluate: error: {scores}/")
    assert ".tmp-" not in lines[-1]
    assert tree(workspace) == before
