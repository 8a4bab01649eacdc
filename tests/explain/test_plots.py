"""Per-design attribution figures: what each panel shows, not how it looks.

The figure is captured before it is saved (``save_figure`` patched) so that its axes, titles,
colour maps and markers can be inspected; one test saves it for real.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import xarray as xr
from matplotlib.collections import LineCollection

import explain.plots as plots
from data.campaign import simulate_campaign
from data.physics import PhysicsParams
from data.simulator import VorticityModel
from explain.api import explain
from explain.catalogue import METHODS
from explain.evaluation.groundtruth import MIN_MARGIN
from explain.plots import Design, attribution_figure

METHODS_SHOWN = ["cam", "hirescam", "gradcam", "layercam", "integrated-gradients"]
SIZE = 16


@pytest.fixture(scope="module")
def case(tiny_campaign) -> tuple[xr.Dataset, Design]:
    """Maps of the tiny gap-head model for one 16x16 design, and all its campaign facts."""
    model, _ = tiny_campaign
    ds = simulate_campaign(1, size=SIZE, seed=2)
    maps = explain(model, ds["roughness"].values, methods=METHODS_SHOWN).isel(sample=0)
    params = PhysicsParams.for_size(SIZE)
    one = ds.isel(sample=0)
    design = Design(
        roughness=one["roughness"].values,
        ys=ds["y"].values,
        xs=ds["x"].values,
        contribution=one["contribution"].values,
        simulated=float(one["max_vorticity"]),
        peak=(int(one["peak_y"]), int(one["peak_x"])),
        peak_margin=0.2,
        vorticity=VorticityModel(params).field(one["roughness"].values[None])[0],
        wake=params.wake,
    )
    return maps, design


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch):
    """Draw a figure and return it open instead of saving it."""
    figures: list[plt.Figure] = []

    def keep(fig: plt.Figure, stem: Path) -> list[Path]:
        figures.append(fig)
        return [stem.with_suffix(".png"), stem.with_suffix(".pdf")]

    monkeypatch.setattr(plots, "save_figure", keep)

    def draw(maps: xr.Dataset, design: Design, **options) -> plt.Figure:
        attribution_figure(maps, design, Path("unused"), **options)
        return figures[-1]

    yield draw
    for fig in figures:
        plt.close(fig)


def titled(fig: plt.Figure, text: str) -> list[plt.Axes]:
    return [ax for ax in fig.axes if text in ax.get_title()]


def test_figure_is_written_as_png_and_pdf(case, tmp_path: Path) -> None:
    maps, design = case
    written = attribution_figure(maps, design, tmp_path / "design-00000", title="design 0")
    assert written == [tmp_path / "design-00000.png", tmp_path / "design-00000.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"


def test_identical_methods_share_one_row(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, design)
    # a global-average-pool head: CAM = HiResCAM = Grad-CAM, drawn once per mode
    merged = titled(fig, "cam = hirescam = gradcam")
    assert len(merged) == 2
    assert "identical maps" in merged[0].get_title()
    assert len(titled(fig, "layercam")) == 2
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 3 + 3 * 2  # design row: heights, truth, vorticity; 3 rows x 2 modes


def test_different_maps_keep_their_own_rows(case, drawn) -> None:
    maps, design = case
    changed = maps.copy(deep=True)
    changed["attribution"].loc[{"attribution_method": "hirescam"}] *= 1.001
    fig = drawn(changed, design)
    assert len(titled(fig, "cam = gradcam")) == 2
    assert not titled(fig, "cam = hirescam")


@pytest.mark.parametrize(("margin", "flagged"), [(0.03, True), (0.2, False)])
def test_ambiguous_target_is_flagged_in_the_title(case, drawn, margin, flagged) -> None:
    maps, design = case
    fig = drawn(maps, dataclasses.replace(design, peak_margin=margin), min_margin=MIN_MARGIN)
    title = fig.get_suptitle()
    assert ("ambiguous target: rival vortex peak within 3.0%" in title) is flagged
    assert "predicted max vorticity" in title


def test_heights_and_attributions_use_different_colour_maps(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, design)
    cmap = {ax.get_title(): ax.images[0].get_cmap().name for ax in fig.axes if ax.images}
    heights = [name for title, name in cmap.items() if title.startswith("input roughness")]
    assert heights == [plots.HEIGHT_CMAP]
    signed = [name for title, name in cmap.items() if title.startswith(("cam", "integrated"))]
    truth = [name for title, name in cmap.items() if title.startswith("ground truth")]
    assert set(signed) == set(truth) == {plots.SIGNED_CMAP}
    assert {name for title, name in cmap.items() if title.startswith("layercam")} == {
        plots.NON_NEGATIVE_CMAP  # rectified: sequential, from 0
    }
    assert plots.HEIGHT_CMAP not in {*signed, plots.NON_NEGATIVE_CMAP, plots.VORTICITY_CMAP}
    (layercam,) = [ax for ax in titled(fig, "layercam") if "no interpolation" in ax.get_title()]
    assert layercam.images[0].get_clim()[0] == 0.0


def test_relu_maps_use_the_sequential_colour_map(case, drawn) -> None:
    maps, design = case
    rectified = maps.copy()
    rectified["attribution"] = rectified["attribution"].clip(min=0)
    rectified.attrs["relu"] = "true"
    fig = drawn(rectified, design)
    names = {ax.images[0].get_cmap().name for ax in titled(fig, "integrated-gradients")}
    assert names == {plots.NON_NEGATIVE_CMAP}


def test_every_map_states_its_reference_and_units(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, design)
    for ax in fig.axes:
        if ax.images and not ax.get_title().startswith(("input roughness", "vortex")):
            assert "0 = " in ax.get_title(), ax.get_title()
    assert len(titled(fig, "integrated-gradients\n0 = no change from smooth wall (h = 0)")) == 2
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels.count(r"$U_e/\delta$ per cell") == 1 + 2  # the truth and both IG panels
    per_layer_cell = r"$U_e/\delta$ per layer cell" + "\n(1 layer cell = 2x2 input cells)"
    assert labels.count(per_layer_cell) == 4  # cam = hirescam = gradcam and layercam


def test_layer_cell_boundaries_only_on_interpolated_layer_maps(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, design)

    def grid_lines(ax: plt.Axes) -> int:
        return sum(len(c.get_segments()) for c in ax.collections if isinstance(c, LineCollection))

    (none,) = [ax for ax in titled(fig, "layercam") if "no interpolation" in ax.get_title()]
    (bilinear,) = [ax for ax in titled(fig, "layercam") if "bilinear" in ax.get_title()]
    assert grid_lines(none) == 0
    assert grid_lines(bilinear) == 2 * (8 - 1)  # an 8x8 layer: 7 inner lines each way
    assert all(grid_lines(ax) == 0 for ax in titled(fig, "integrated-gradients"))


def test_the_vortex_peak_is_marked_beyond_the_patch(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, design)
    dx = float(design.xs[1] - design.xs[0])
    patch_end = float(design.xs[-1]) + dx / 2
    peak_x = float(design.xs[0]) + design.peak[1] * dx
    for prefix in ("input roughness", "vortex"):
        (ax,) = [a for a in fig.axes if a.get_title().startswith(prefix)]
        assert ax.get_xlim()[1] == pytest.approx(patch_end + design.wake * dx)
        markers = [line for line in ax.lines if line.get_marker() == "X"]
        assert len(markers) == 1
        assert markers[0].get_xdata()[0] == pytest.approx(peak_x)
        assert markers[0].get_xdata()[0] > patch_end
    (strip,) = [a for a in fig.axes if a.get_title().startswith("vortex")]
    assert strip.images[0].get_array().shape == (SIZE, SIZE + design.wake)


def test_a_design_without_truth_or_physics_still_draws(case, drawn) -> None:
    maps, design = case
    fig = drawn(maps, Design(design.roughness))
    assert not [a for a in fig.axes if a.get_title().startswith(("ground truth", "vortex"))]
    (ax,) = [a for a in fig.axes if a.get_title().startswith("input roughness")]
    assert not ax.lines
    assert "ambiguous" not in fig.get_suptitle()


def test_every_catalogue_method_has_a_reference() -> None:
    for method in METHODS.values():
        assert method.reference, method.name
        assert ("{baseline}" in method.reference) <= method.needs_baseline, method.name
        assert method.non_negative or not method.rectified, method.name
