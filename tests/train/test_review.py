"""``surrogate review`` through the real entry point, on the smoke model and campaign: the
outputs and their agreement, the domain check on out-of-domain designs, provenance hashes and
the one-line refusals."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from train.cli import main
from train.review_command import OUTPUTS

pytestmark = pytest.mark.slow


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def review(checkpoint: Path, design: Path, out: Path, campaign: Path, *extra: str) -> int:
    args = ["review", "--checkpoint", str(checkpoint), "--design", str(design)]
    return main([*args, "--out", str(out), "--campaign", str(campaign), *extra])


@pytest.fixture(scope="module")
def reviewed(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, campaign_file: Path
) -> Path:
    out = tmp_path_factory.mktemp("review") / "review"
    assert review(checkpoint, campaign_file, out, campaign_file, "--samples", "3,5") == 0
    return out


def test_every_output_is_written_and_agrees(
    reviewed: Path, checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset
) -> None:
    assert sorted(p.name for p in reviewed.iterdir()) == sorted(OUTPUTS)
    data = json.loads((reviewed / "review.json").read_text())
    # provenance: the real files' hashes
    assert data["provenance"]["checkpoints"][0]["sha256"] == digest(checkpoint)
    assert data["provenance"]["campaign_sha256"] == digest(campaign_file)
    assert data["provenance"]["design_sha256"] == digest(campaign_file)
    designs = data["designs"]
    assert [d["sample"] for d in designs] == [3, 5]
    for d in designs:
        low, high = d["interval"]
        assert low < d["prediction"] < high
        assert high - d["prediction"] == pytest.approx(data["model"]["halfwidth"])
        assert d["simulated"] == pytest.approx(float(campaign_ds.max_vorticity[d["sample"]]))
        # the synthetic campaign's physics re-simulates every what-if
        assert all(w["true_change"] is not None for w in d["what_ifs"])
        assert len(d["what_ifs"]) == 3 * len(d["regions"])  # wall, blurred, random
    assert any(d["regions"] for d in designs)
    with (reviewed / "regions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(d["regions"]) for d in designs)
    with xr.open_dataset(reviewed / "review.nc", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["prediction"].values, [d["prediction"] for d in designs])
        for i, d in enumerate(designs):
            labels = ds["region"].values[i]
            assert [int((labels == r["rank"]).sum()) for r in d["regions"]] == [
                r["cells"] for r in d["regions"]
            ]
    assert (reviewed / "review.pdf").read_bytes().startswith(b"%PDF")
    text = (reviewed / "review.md").read_text()
    assert f"{designs[0]['prediction']:.4f}" in text


def test_a_new_design_needs_no_simulated_target(
    tmp_path: Path, checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset
) -> None:
    heights = campaign_ds.roughness.values[7].astype(np.float64)
    npy = tmp_path / "new.npy"
    np.save(npy, heights)
    dx = float(campaign_ds.x[1] - campaign_ds.x[0])
    out = tmp_path / "out"
    assert review(checkpoint, npy, out, campaign_file, "--dx", str(dx)) == 0
    (design,) = json.loads((out / "review.json").read_text())["designs"]
    assert design["simulated"] is None
    assert design["domain"]["in_domain"]


OUT_OF_DOMAIN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "heights-x5": lambda h: 5 * h,
    "checkerboard": lambda h: 0.02 * (np.indices(h.shape).sum(axis=0) % 2 * 2 - 1),
    "one-spike": lambda h: np.where(np.arange(h.size).reshape(h.shape) == h.size // 2, 1.0, 0.0),
    "all-zeros": np.zeros_like,
}


def test_out_of_domain_designs_are_flagged_with_a_reason(
    tmp_path: Path, checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset
) -> None:
    base = campaign_ds.roughness.values[7].astype(np.float64)
    dx = float(campaign_ds.x[1] - campaign_ds.x[0])
    stack = np.stack([make(base) for make in OUT_OF_DOMAIN.values()])
    np.save(tmp_path / "odd.npy", stack)
    out = tmp_path / "odd"
    assert review(checkpoint, tmp_path / "odd.npy", out, campaign_file, "--dx", str(dx)) == 0
    designs = json.loads((out / "review.json").read_text())["designs"]
    for name, design in zip(OUT_OF_DOMAIN, designs, strict=True):
        failed = [f for f in design["domain"]["findings"] if not f["passed"]]
        assert not design["domain"]["in_domain"], name
        assert all(f["message"].startswith(f["check"]) for f in failed), name
    # another spacing: the same heights said to lie on cells half as long
    out = tmp_path / "spacing"
    np.save(tmp_path / "base.npy", base)
    assert review(checkpoint, tmp_path / "base.npy", out, campaign_file, "--dx", str(dx / 2)) == 0
    (design,) = json.loads((out / "review.json").read_text())["designs"]
    assert any(f["check"].startswith("spacing") and not f["passed"]
               for f in design["domain"]["findings"])  # fmt: skip


def test_another_grid_is_refused_in_one_line(
    tmp_path: Path, checkpoint: Path, campaign_file: Path, error_line: Callable[..., str]
) -> None:
    np.save(tmp_path / "big.npy", np.zeros((32, 32)))
    out = tmp_path / "out"
    assert review(checkpoint, tmp_path / "big.npy", out, campaign_file, "--dx", "1") == 2
    error_line("big.npy", "32x32", "16x16")
    assert not out.exists()


def test_a_npy_design_without_its_spacing_is_refused(
    tmp_path: Path, checkpoint: Path, campaign_file: Path, error_line: Callable[..., str]
) -> None:
    np.save(tmp_path / "d.npy", np.zeros((16, 16)))
    assert review(checkpoint, tmp_path / "d.npy", tmp_path / "out", campaign_file) == 2
    error_line("d.npy", "--dx")
