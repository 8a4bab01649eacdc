"""``surrogate explain`` end to end on the smoke model: output file, plots and bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from data.campaign import GROUND_TRUTH, simulate_campaign, write_campaign
from explain.api import explain
from surrogate import load_model
from train.cli import main
from train.explain_command import campaign_physics, design_facts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(checkpoint: Path, data: Path, out: Path, *extra: str) -> int:
    args = ["explain", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
    return main([*args, *extra])


def test_maps_file_matches_the_python_api(
    checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset, tmp_path: Path
) -> None:
    out = tmp_path / "maps.nc"
    extra = ["--methods", "cam,hirescam", "layercam", "gradient", "--samples", "3:9"]
    assert run(checkpoint, campaign_file, out, *extra, "--batch-size", "4") == 0
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert list(ds["sample"].values) == [3, 4, 5, 6, 7, 8]
        assert list(ds["attribution_method"].values) == ["cam", "hirescam", "layercam", "gradient"]
        assert list(ds["interpolation"].values) == ["none", "bilinear"]
        assert ds["attribution"].shape == (6, 4, 2, 16, 16)
        assert ds["attribution_native"].dims == ("sample", "layer_method", "y_layer", "x_layer")
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        assert ds.attrs["checkpoint_sha256"] == digest
        assert ds.attrs["relu"] == "false"
        assert ds.attrs["normalised"] == "false"
        assert ds.attrs["cam_relative_residual"] < 1e-4
        np.testing.assert_array_equal(
            ds["simulated"].values, campaign_ds["max_vorticity"].values[3:9]
        )
        expected = explain(
            load_model(checkpoint),
            campaign_ds["roughness"].values[3:9],
            methods=["cam", "hirescam", "layercam", "gradient"],
        )
        np.testing.assert_allclose(
            ds["attribution"].values, expected["attribution"].values, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(ds["prediction"].values, expected["prediction"].values)


def test_relu_and_normalise_are_applied_and_recorded(
    checkpoint: Path, campaign_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps.nc"
    extra = ["--methods", "hirescam", "--relu", "--normalise", "--samples", "4"]
    assert run(checkpoint, campaign_file, out, *extra) == 0
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["relu"] == "true"
        assert ds.attrs["normalised"] == "true"
        native = ds["attribution_native"].values
        assert native.min() >= 0
        peaks = np.abs(native).max(axis=(2, 3))
        assert np.all((np.abs(peaks - 1) < 1e-6) | (peaks == 0))
        assert list(ds["method_units"].values) == ["1"]


@pytest.mark.slow
def test_plots_for_the_first_designs(checkpoint: Path, campaign_file: Path, tmp_path: Path) -> None:
    out, plots = tmp_path / "maps.nc", tmp_path / "plots"
    extra = ["--samples", "0:3", "--plots", str(plots), "--plot-samples", "2"]
    assert run(checkpoint, campaign_file, out, *extra) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == [f"design-0000{i}.{ext}" for i in (0, 1) for ext in ("pdf", "png")]
    assert (plots / "design-00000.png").read_bytes()[:8] == PNG_MAGIC


def test_list_layers(
    checkpoint: Path, campaign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--checkpoint", str(checkpoint), "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert "network.features.stage1" in out
    assert "[default" in out
    # the smoke grid is 16x16 cells over a 16-delta patch: 1 delta per input cell
    assert "input of 1 delta cells (assumed" in out
    (stage1,) = [line for line in out.splitlines() if "network.features.stage1 " in line]
    assert "16x16  1x1 = 1 delta" in stage1
    (default,) = [line for line in out.splitlines() if "[default" in line]
    assert "8x8  2x2 = 2 delta" in default  # a layer cell covers 2x2 input cells
    # with --data, the campaign's own spacing
    args = ["explain", "--checkpoint", str(checkpoint), "--data", str(campaign_file)]
    assert main([*args, "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert f"input of 1 delta cells (from {campaign_file})" in out
    assert "2x2 = 2 delta" in out


def test_design_facts_carry_the_peak_and_the_vortex(campaign_ds: xr.Dataset) -> None:
    physics = campaign_physics(campaign_ds)
    assert physics is not None
    design = design_facts(campaign_ds, 5, physics)
    one = campaign_ds.isel(sample=5)
    assert design.peak == (int(one["peak_y"]), int(one["peak_x"]))
    assert design.peak_margin == pytest.approx(float(one["peak_margin"]))
    assert design.wake == 4  # 16 cells at N = 64, scaled to N = 16
    assert design.vorticity.shape == (16, 16 + 4)
    # the peak of |w| over the wake is the campaign's p*
    wake = np.abs(design.vorticity[:, 16:])
    assert np.unravel_index(wake.argmax(), wake.shape) == (design.peak[0], design.peak[1] - 16)
    np.testing.assert_array_equal(design.contribution, one["contribution"].values)
    # a converted campaign (no ground truth, no model attributes): heights only
    bare = campaign_ds[["roughness", "max_vorticity"]]
    bare.attrs = {}
    assert campaign_physics(bare) is None
    facts = design_facts(bare, 5)
    assert (facts.peak, facts.vorticity, facts.contribution) == (None, None, None)


def test_only_the_selected_designs_are_read(
    checkpoint: Path, campaign_ds: xr.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NaN in a design that is not selected does not stop the command (it is never read);
    in a selected one it is refused, naming the design."""
    values = campaign_ds.roughness.values.copy()
    values[40, 3, 4] = np.nan
    data = tmp_path / "one-bad-design.nc"
    write_campaign(campaign_ds.assign(roughness=campaign_ds.roughness.copy(data=values)), data)
    assert (
        run(checkpoint, data, tmp_path / "first.nc", "--samples", "4", "--methods", "gradient") == 0
    )
    capsys.readouterr()
    assert run(checkpoint, data, tmp_path / "bad.nc", "--samples", "38:42") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "'roughness' has NaN or Inf values (first at sample index 40)" in err
    assert not (tmp_path / "bad.nc").exists()


@pytest.fixture(scope="module")
def other_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grid")
    return write_campaign(simulate_campaign(4, size=8, seed=1), folder / "grid8.nc")


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (["--methods", "cam", "smoothgrad"], ["unknown method 'smoothgrad'", "hirescam"]),
        (["--layer", "network.nope"], ["layer 'network.nope' not found"]),
        (["--layer", "network.pool"], ["'network.pool' has no spatial"]),
        (["--interpolation", "none,spline"], ["unknown interpolation"]),
        (["--samples", "10:5"], ["--samples '10:5'"]),
        (["--device", "tpu"], ["--device 'tpu'"]),
    ],
)
def test_bad_options(
    checkpoint: Path,
    campaign_file: Path,
    tmp_path: Path,
    extra: list[str],
    parts: list[str],
    error_line: Callable[..., str],
) -> None:
    out = tmp_path / "maps.nc"
    assert run(checkpoint, campaign_file, out, *extra) == 2
    error_line(*parts)
    assert list(tmp_path.iterdir()) == []


def test_campaign_grid_differs_from_the_model(
    checkpoint: Path, other_grid: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    assert run(checkpoint, other_grid, tmp_path / "maps.nc") == 2
    error_line(str(other_grid), "8x8", "16x16")
    assert list(tmp_path.iterdir()) == []


def test_foreign_checkpoint(
    campaign_file: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"model": {"weight": torch.zeros(2)}}, foreign)
    assert run(foreign, campaign_file, tmp_path / "maps.nc") == 2
    error_line(str(foreign), "not a surrogate checkpoint")
    assert not (tmp_path / "maps.nc").exists()


def test_existing_output_is_kept(
    checkpoint: Path, campaign_file: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    out = tmp_path / "maps.nc"
    out.write_text("keep me")
    assert run(checkpoint, campaign_file, out) == 2
    error_line(str(out), "--overwrite")
    assert out.read_text() == "keep me"


def test_samples_from_the_checkpoints_test_split(
    checkpoint: Path, campaign_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps.nc"
    assert run(checkpoint, campaign_file, out, "--samples", "test", "--methods", "gradient") == 0
    held_out = torch.load(checkpoint, weights_only=True)["CampaignDataModule"]["split_test"]
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert list(ds["sample"].values) == sorted(held_out)


# --- surrogate evaluate ----------------------------------------------------------------------


def evaluate_args(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
    quick = ["--samples", "4", "--steps", "4", "--sanity-samples", "2", "--batch-size", "2"]
    return [*args, *quick, *extra]


def test_evaluate_writes_the_table_plots_and_recommendation(
    checkpoint: Path, campaign_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores"
    methods = ["--methods", "hirescam", "gradient", "guided-backprop"]
    assert main(evaluate_args(checkpoint, campaign_file, out, *methods)) == 0
    assert "Recommendation" in capsys.readouterr().out
    for name in ("scores.md", "scores.csv", "scores.nc", "summary.json", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "cascade.pdf").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["table"]) == {"hirescam", "gradient", "guided-backprop"}
    assert summary["settings"]["samples"] == 4
    assert "| guided-backprop (nr) |" in (out / "scores.md").read_text()
    with xr.open_dataset(out / "scores.nc", engine="h5netcdf") as ds:
        held_out = torch.load(checkpoint, weights_only=True)["CampaignDataModule"]["split_test"]
        assert list(ds["sample"].values) == sorted(held_out)[:4]
        assert ds["deletion_auc_smooth-wall"].shape == (3, 4)


def test_evaluate_keeps_earlier_results(
    checkpoint: Path, campaign_file: Path, tmp_path: Path, error_line: Callable[..., str]
) -> None:
    out = tmp_path / "scores"
    out.mkdir()
    (out / "scores.md").write_text("earlier")
    assert main(evaluate_args(checkpoint, campaign_file, out)) == 2
    error_line(str(out), "--overwrite")
    assert (out / "scores.md").read_text() == "earlier"


def test_evaluate_writes_layers_csv_only_with_ground_truth(
    checkpoint: Path, campaign_file: Path, campaign_ds: xr.Dataset, tmp_path: Path
) -> None:
    quick = ["--methods", "hirescam", "--sanity-samples", "0", "--samples", "6"]
    out = tmp_path / "truth"
    sweep = ["--layer-sweep-methods", "hirescam,layercam"]
    assert main(evaluate_args(checkpoint, campaign_file, out, *quick, *sweep)) == 0
    header, *rows = (out / "layers.csv").read_text().splitlines()
    assert header.split(",")[:5] == ["layer", "height", "width", "cell", "method"]
    assert {row.split(",")[4] for row in rows} == {"hirescam", "layercam"}
    assert (out / "layers.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["splits"]) == {"saturation", "peak_margin"}
    assert len(summary["layers"]) == len(rows)
    # switched off: no sweep, the splits stay
    off = tmp_path / "off"
    assert main(evaluate_args(checkpoint, campaign_file, off, *quick, "--no-layer-sweep")) == 0
    assert not (off / "layers.csv").exists()
    assert json.loads((off / "summary.json").read_text())["layers"] is None
    # truth without the saturation level: no saturation split, said so in scores.md
    no_omega = campaign_ds.copy()
    del no_omega.attrs["model_omega_s"]
    write_campaign(no_omega, tmp_path / "no-omega.nc")
    assert main(evaluate_args(checkpoint, tmp_path / "no-omega.nc", tmp_path / "a", *quick)) == 0
    assert "Not split: no saturation ratios" in (tmp_path / "a" / "scores.md").read_text()
    assert (tmp_path / "a" / "layers.csv").is_file()
    # no ground truth: no layers.csv, no splits
    write_campaign(campaign_ds.drop_vars(GROUND_TRUTH), tmp_path / "bare.nc")
    assert main(evaluate_args(checkpoint, tmp_path / "bare.nc", tmp_path / "b", *quick)) == 0
    assert not (tmp_path / "b" / "layers.csv").exists()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["splits"] == {}
    # an earlier layers.csv is kept unless --overwrite, like the other outputs
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "layers.csv").write_text("earlier")
    assert main(evaluate_args(checkpoint, campaign_file, stale, *quick)) == 2
    assert (stale / "layers.csv").read_text() == "earlier"


def test_a_recorded_split_is_refused_on_another_campaign(
    checkpoint: Path, campaign_ds: xr.Dataset, tmp_path: Path, error_line
) -> None:
    """Same grid, other designs: `--samples test` would pick the wrong ones; indices work."""
    from data.campaign import write_campaign

    shuffled = campaign_ds.isel(sample=np.roll(np.arange(campaign_ds.sizes["sample"]), 1))
    other = write_campaign(shuffled, tmp_path / "reordered.nc")
    assert run(checkpoint, other, tmp_path / "maps.nc", "--samples", "test") == 2
    error_line("reordered.nc: not the campaign", str(checkpoint))
    assert not (tmp_path / "maps.nc").exists()
    assert run(checkpoint, other, tmp_path / "maps.nc", "--samples", "0:3") == 0


def test_the_output_may_not_be_an_input(
    checkpoint: Path, campaign_ds: xr.Dataset, tmp_path: Path, error_line
) -> None:
    """`--out` naming the campaign would replace it, `--overwrite` or not: refused up front."""
    from data.campaign import write_campaign

    data = write_campaign(campaign_ds, tmp_path / "campaign.nc")
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    assert run(checkpoint, data, data, "--overwrite") == 2
    error_line(str(data), "an input of this command")
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
