"""Attribution figures for a design review: the design, its vortex, and each method's maps.

Colour says which quantity a panel shows: heights in brown-green (``BrBG``), signed maps and
the exact contribution in blue-red centred at zero (``RdBu_r``), maps that are never negative
in sequential red (``Reds``) and the vorticity magnitude ``|w|`` in ``magma``. So red never
means "bump" in one panel and "raises vorticity" in the next.

The first row shows the roughness, extended downstream by the wake with the vorticity peak
``p*`` marked; the exact contribution where the campaign has it; and ``|w|`` over patch and wake
where the campaign records its physics. Then one row per method (methods whose maps are
identical for the design share a row), one column per interpolation mode, with one colour
limit per row, so a colour means the same value with and without interpolation. Interpolated
layer maps carry the layer's cell boundaries, so a smoothed coarse map is not read as fine
structure. Titles say what 0 means for each map, colourbars give the units, axes are in
delta and the flow runs towards +x.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from data.figures import save_figure
from explain.catalogue import METHOD_DIM, METHODS

ROW_TITLES = {
    "none": "no interpolation",
    "nearest": "nearest",
    "bilinear": "bilinear interpolation",
    "bicubic": "bicubic interpolation",
}
HEIGHT_CMAP = "BrBG"
SIGNED_CMAP = "RdBu_r"
NON_NEGATIVE_CMAP = "Reds"
VORTICITY_CMAP = "magma"
# two methods' maps closer than this, relative to the larger peak, are drawn as one row
IDENTICAL_RTOL = 1e-5
PEAK_STYLE = {"marker": "X", "ms": 8, "color": "cyan", "mec": "k", "mew": 0.8, "ls": "none"}
TRUTH_REFERENCE = "0 = no contribution (exact, vs. a smooth wall)"
_NATIVE_SHAPE_ATTRS = {"layer": "layer_shape", "pyramid": "polycam_shape"}
_TITLE_WIDTH = 52  # characters per title line, so titles stay above their own panel


@dataclass(frozen=True)
class Design:
    """What is known about one design besides its maps, as plain arrays.

    The engine reads no campaign: the application fills this in from one.

    Attributes:
        roughness: Heights ``(y, x)`` in delta.
        ys: Spanwise cell centres ``(y,)`` in delta; default cell indices.
        xs: Streamwise cell centres ``(x,)`` in delta, evenly spaced; default cell indices.
        contribution: Exact per-cell contribution ``(y, x)`` in U_e/delta per cell.
        simulated: Simulated maximum vorticity in U_e/delta.
        peak: Cell indices ``(y, x)`` of the wake vorticity peak ``p*``; ``x`` counts on the
            extended grid (patch plus wake), so it is at least the patch length.
        peak_margin: Relative gap between the peak and the best rival peak.
        vorticity: Vorticity ``w`` or ``|w|`` ``(y, patch + wake)`` in U_e/delta.
        wake: Cells of wake downstream of the patch.
    """

    roughness: np.ndarray
    ys: np.ndarray | None = None
    xs: np.ndarray | None = None
    contribution: np.ndarray | None = None
    simulated: float | None = None
    peak: tuple[int, int] | None = None
    peak_margin: float | None = None
    vorticity: np.ndarray | None = None
    wake: int = 0

    @property
    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres ``(ys, xs)`` in delta (cell indices where none were given)."""
        ny, nx = self.roughness.shape
        ys = np.arange(ny, dtype=float) if self.ys is None else np.asarray(self.ys, float)
        xs = np.arange(nx, dtype=float) if self.xs is None else np.asarray(self.xs, float)
        return ys, xs

    @property
    def length(self) -> int:
        """Streamwise cells of patch plus wake (enough to hold the peak and the vorticity)."""
        cells = [self.roughness.shape[1] + self.wake]
        if self.vorticity is not None:
            cells.append(self.vorticity.shape[1])
        if self.peak is not None:
            cells.append(self.peak[1] + 1)
        return max(cells)


def _extent(ys: np.ndarray, xs: np.ndarray, columns: int | None = None) -> list[float]:
    """imshow extent whose pixel centres are the cell centres ``ys``, ``xs`` (in delta).

    ``columns`` extends the streamwise axis to that many cells of the same spacing.
    """
    dy = float(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    dx = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    last = xs[0] + ((columns or len(xs)) - 1) * dx
    return [xs[0] - dx / 2, last + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2]


def _units_label(units: str, block: tuple[int, int] | None = None) -> str:
    """``"U_e/delta per layer cell"`` -> mathtext, with the input cells one layer cell covers."""
    if units == "1":
        return "dimensionless (each map scaled to max |map| = 1)"
    table = {"U_e/delta": r"$U_e/\delta$", "delta": r"$\delta$"}
    label = " ".join(table.get(w, w) for w in units.split(" "))
    if block is not None and "layer cell" in units:
        label += f"\n(1 layer cell = {block[0]}x{block[1]} input cells)"
    return label


def _image(ax, fig, field, extent, cmap: str, limits: tuple[float, float], label: str) -> None:
    """``field`` as an image with a labelled colourbar."""
    image = ax.imshow(
        field, origin="lower", extent=extent, cmap=cmap, vmin=limits[0], vmax=limits[1],
        interpolation="nearest", aspect="equal",
    )  # fmt: skip
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    bar.ax.yaxis.get_offset_text().set_fontsize(6)
    ax.tick_params(labelsize=6)


def _limits(values: np.ndarray, non_negative: bool = False) -> tuple[float, float]:
    """Colour limits: ``[0, max]`` for non-negative maps, else symmetric about zero."""
    limit = float(np.abs(values).max()) or 1.0
    return (0.0, limit) if non_negative else (-limit, limit)


def _title(ax, *lines: str) -> None:
    ax.set_title("\n".join(textwrap.fill(line, _TITLE_WIDTH) for line in lines), fontsize=7)


def _mark_vortex(ax, design: Design, shade_wake: bool) -> None:
    """Extend ``ax`` downstream over the wake, mark the patch's end and the peak ``p*``."""
    ys, xs = design.coordinates
    patch, full = _extent(ys, xs), _extent(ys, xs, design.length)
    if full[1] > patch[1]:
        ax.set_xlim(full[0], full[1])
        ax.axvline(patch[1], color="0.3", lw=0.8, ls="--")
        if shade_wake:
            ax.axvspan(patch[1], full[1], color="0.9", zorder=-1)
            ax.text((patch[1] + full[1]) / 2, full[3], "wake", ha="center", va="top", fontsize=6)
    if design.peak is not None:
        dx = (full[1] - full[0]) / design.length
        dy = (full[3] - full[2]) / len(ys)
        y, x = full[2] + (design.peak[0] + 0.5) * dy, full[0] + (design.peak[1] + 0.5) * dx
        ax.plot([x], [y], **PEAK_STYLE)
        ax.annotate("p*", (x, y), xytext=(-4, 5), textcoords="offset points", fontsize=7)


def _design_row(axes, fig, design: Design) -> None:
    """Roughness (extended by the wake, peak marked), exact contribution, vorticity ``|w|``."""
    ys, xs = design.coordinates
    extent = _extent(ys, xs)
    roughness = np.asarray(design.roughness)
    _image(axes[0], fig, roughness, extent, HEIGHT_CMAP, _limits(roughness), r"height [$\delta$]")
    extended = design.length > roughness.shape[1]
    _title(axes[0], "input roughness" + (" and wake, x = peak p*" if extended else ""))
    axes[0].annotate(
        "flow", xy=(0.5, 0.9), xytext=(0.06, 0.9), xycoords="axes fraction", fontsize=7,
        va="center", arrowprops={"arrowstyle": "->", "lw": 1.2},
    )  # fmt: skip
    _mark_vortex(axes[0], design, shade_wake=True)
    column = 1
    if design.contribution is not None:
        truth = np.asarray(design.contribution)
        label = _units_label("U_e/delta per cell")
        _image(axes[column], fig, truth, extent, SIGNED_CMAP, _limits(truth), label)
        _title(axes[column], "ground truth: exact contribution", TRUTH_REFERENCE)
        column += 1
    if design.vorticity is not None:
        magnitude = np.abs(np.asarray(design.vorticity))
        full = _extent(ys, xs, magnitude.shape[1])
        limits = _limits(magnitude, non_negative=True)
        _image(axes[column], fig, magnitude, full, VORTICITY_CMAP, limits, r"$|w|$ [$U_e/\delta$]")
        _title(axes[column], "vortex: |w| over patch and wake (model)", "x = peak p*")
        _mark_vortex(axes[column], design, shade_wake=False)
        column += 1
    for ax in axes[column:]:
        ax.axis("off")


def _identical_groups(maps: xr.Dataset) -> list[list[str]]:
    """Methods in order, those whose maps (every mode) match an earlier one's grouped with it."""
    values = maps["attribution"].values  # (method, interpolation, y, x)
    units = [str(u) for u in maps["method_units"].values]
    groups: list[list[int]] = []
    for i in range(len(values)):
        for group in groups:
            first = group[0]
            atol = IDENTICAL_RTOL * float(np.abs(values[first]).max())
            same = units[i] == units[first] and np.allclose(
                values[i], values[first], rtol=IDENTICAL_RTOL, atol=atol
            )
            if same:
                group.append(i)
                break
        else:
            groups.append([i])
    names = [str(m) for m in maps[METHOD_DIM].values]
    return [[names[i] for i in group] for group in groups]


def _coarse_grid(maps: xr.Dataset, method: str, shape: tuple[int, int]) -> tuple[int, int] | None:
    """The grid of a layer or pyramid method's native map (attributes ``HxW``) where it is
    coarser than the input grid ``shape``; None for input-grid maps."""
    key = _NATIVE_SHAPE_ATTRS.get(METHODS[method].resolution)
    text = str(maps.attrs.get(key, "")) if key else ""
    if "x" not in text:
        return None
    height, width = (int(n) for n in text.split("x"))
    return None if (height, width) == tuple(shape) else (height, width)


def _layer_grid(ax, shape: tuple[int, int], extent: list[float]) -> None:
    """Thin grey lines on the boundaries of the native map's cells."""
    x0, x1, y0, y1 = extent
    ax.vlines(np.linspace(x0, x1, shape[1] + 1)[1:-1], y0, y1, colors="0.5", lw=0.4)
    ax.hlines(np.linspace(y0, y1, shape[0] + 1)[1:-1], x0, x1, colors="0.5", lw=0.4)


def _row_heading(group: list[str], baseline: str) -> tuple[str, str]:
    """The row's name (``"cam = hirescam"`` for identical maps) and what 0 means."""
    name = " = ".join(group)
    if len(group) > 1:
        name += " (identical maps for this design)"
    if not all(METHODS[m].recommended for m in group):
        name += " (not recommended)"
    references = dict.fromkeys(METHODS[m].reference.format(baseline=baseline) for m in group)
    return name, "; ".join(references)


def _method_row(axes, fig, maps: xr.Dataset, group: list[str], design: Design) -> None:
    """One row: the first method of ``group`` in every interpolation mode, one colour scale."""
    method, modes = group[0], [str(m) for m in maps["interpolation"].values]
    values = maps["attribution"].sel({METHOD_DIM: method})
    non_negative = METHODS[method].non_negative or maps.attrs.get("relu") == "true"
    limits = _limits(values.values, non_negative)
    cmap = NON_NEGATIVE_CMAP if non_negative else SIGNED_CMAP
    ys, xs = design.coordinates
    extent = _extent(ys, xs)
    native = _coarse_grid(maps, method, design.roughness.shape)
    block = (len(ys) // native[0], len(xs) // native[1]) if native else None
    units = str(maps["method_units"].sel({METHOD_DIM: method}).values)
    name, reference = _row_heading(group, str(maps.attrs.get("baseline", "the baseline")))
    for ax, mode in zip(axes, modes, strict=False):
        field = values.sel(interpolation=mode).values
        _image(ax, fig, field, extent, cmap, limits, _units_label(units, block))
        _title(ax, name, reference, ROW_TITLES.get(mode, mode))
        if native is not None and mode != "none":
            _layer_grid(ax, native, extent)
    for ax in axes[len(modes) :]:
        ax.axis("off")


def _suptitle(maps: xr.Dataset, design: Design, title: str, min_margin: float | None) -> str:
    """Prediction, simulation, layer, and the ambiguous-target flag where the peak has a rival."""
    head = f"{title}: " if title else ""
    sim = f", simulated {design.simulated:.4f}" if design.simulated is not None else ""
    lines = [
        rf"{head}predicted max vorticity {float(maps['prediction']):.4f}{sim} $U_e/\delta$; "
        f"layer {maps.attrs['layer']}"
    ]
    margin = design.peak_margin
    if min_margin is not None and margin is not None and margin < min_margin:
        lines.append(f"ambiguous target: rival vortex peak within {margin:.1%}")
    return "\n".join(lines)


def attribution_figure(
    maps: xr.Dataset,
    design: Design,
    stem: Path,
    title: str = "",
    min_margin: float | None = None,
) -> list[Path]:
    """One design's figure, saved as ``stem.png`` and ``stem.pdf``.

    Args:
        maps: One sample of :func:`explain.explain`'s output (``method, interpolation, y, x``).
        design: The design's heights and, where known, its truth, peak and vorticity.
        stem: Output path without suffix.
        title: Prefix of the figure title (e.g. the design id).
        min_margin: Flag the target as ambiguous in the title when the design's peak margin
            is below this (the evaluation leaves such designs out; its threshold is
            ``explain.evaluation.groundtruth.MIN_MARGIN``). None: never flag.

    Returns:
        The paths written, ``[stem.png, stem.pdf]``.
    """
    groups = _identical_groups(maps)
    modes = len(maps["interpolation"])
    first_row = 1 + (design.contribution is not None) + (design.vorticity is not None)
    rows, cols = 1 + len(groups), max(modes, first_row, 2)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    _design_row(axes[0], fig, design)
    for i, group in enumerate(groups, start=1):
        _method_row(axes[i], fig, maps, group, design)
    for ax in axes[-1]:
        ax.set_xlabel(r"$x/\delta$ (streamwise)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$y/\delta$ (spanwise)", fontsize=7)
    fig.suptitle(_suptitle(maps, design, title, min_margin), fontsize=9, y=1.0, va="bottom")
    fig.tight_layout()
    return save_figure(fig, stem)
