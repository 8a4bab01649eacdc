"""Shared fixtures of the command-line tests: the smoke config, a tiny valid campaign and a
model fitted on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import xarray as xr

from data.campaign import simulate_campaign, write_campaign

REPO = Path(__file__).resolve().parents[2]
SAMPLES, SIZE = 64, 16  # the campaign of configs/smoke.yaml


@pytest.fixture(scope="session")
def smoke() -> Path:
    """``configs/smoke.yaml``: 64 samples of 16x16, widths [4, 8], 2 epochs."""
    return REPO / "configs" / "smoke.yaml"


@pytest.fixture(scope="session")
def campaign_ds() -> xr.Dataset:
    """The smoke campaign in memory (64 samples, 16x16, seed 0)."""
    return simulate_campaign(SAMPLES, size=SIZE, seed=0)


@pytest.fixture(scope="session")
def campaign_file(tmp_path_factory: pytest.TempPathFactory, campaign_ds: xr.Dataset) -> Path:
    """A valid campaign file; tests must not modify it."""
    return write_campaign(campaign_ds, tmp_path_factory.mktemp("campaign") / "campaign.nc")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, smoke: Path, campaign_file: Path) -> Path:
    """The smoke model (gap head, 16x16) fitted on ``campaign_file`` for the configured 2
    epochs; its best checkpoint. Tests must not modify it."""
    from train.cli import main

    run_dir = tmp_path_factory.mktemp("explain-fit") / "run"
    args = ["fit", "--config", str(smoke), "--data.path", str(campaign_file)]
    assert main([*args, "--run_dir", str(run_dir)]) == 0
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    return best


@pytest.fixture
def error_line(capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """Check that stderr holds exactly one line, no traceback, containing every ``part``."""

    def check(*parts: str) -> str:
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
        for part in parts:
            assert part in lines[0], f"{part!r} not in {lines[0]!r}"
        return lines[0]

    return check
