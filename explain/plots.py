"""Attribution figures: per design, the roughness and each method without and with interpolation.

Signed maps use a diverging colormap centred at zero with the same limits in both rows, so
a colour means the same value with and without interpolation. Axes are in delta, the flow
runs towards +x (arrow on the roughness panel), and each colorbar carries its units.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from data.figures import save_figure
from explain.catalogue import METHODS

ROW_TITLES = {
    "none": "no interpolation",
    "nearest": "nearest",
    "bilinear": "bilinear interpolation",
    "bicubic": "bicubic interpolation",
}


def _extent(ys: np.ndarray, xs: np.ndarray) -> list[float]:
    """imshow extent whose pixel centres are the cell centres ``ys``, ``xs`` (in delta)."""
    dy = float(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    dx = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    return [xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2]


def _units_label(units: str) -> str:
    """``"U_e/delta per delta"`` -> mathtext, each unit symbol replaced once."""
    words = units.split(" ")
    table = {"U_e/delta": r"$U_e/\delta$", "delta": r"$\delta$"}
    return " ".join(table.get(w, w) for w in words)


def _field_panel(ax, fig, field, extent, title, label, cmap="RdBu_r", limit=None) -> None:
    limit = limit if limit is not None else float(np.abs(field).max()) or 1.0
    image = ax.imshow(
        field, origin="lower", extent=extent, cmap=cmap, vmin=-limit, vmax=limit,
        interpolation="nearest", aspect="equal",
    )  # fmt: skip
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    ax.tick_params(labelsize=6)


def attribution_figure(
    maps: xr.Dataset,
    roughness: np.ndarray,
    stem: Path,
    ys: np.ndarray | None = None,
    xs: np.ndarray | None = None,
    contribution: np.ndarray | None = None,
    simulated: float | None = None,
    title: str = "",
) -> list[Path]:
    """One design's figure, saved as ``stem.png`` and ``stem.pdf``.

    Args:
        maps: One sample of :func:`explain.explain`'s output (``method, interpolation, y, x``).
        roughness: The design's heights ``(y, x)`` in delta.
        stem: Output path without suffix.
        ys, xs: Cell-centre coordinates in delta; default cell indices.
        contribution: Exact per-cell contribution (synthetic campaigns), shown under the input.
        simulated: Simulated maximum vorticity, for the title.
        title: Prefix of the figure title (e.g. the design id).
    """
    methods = [str(m) for m in maps["method"].values]
    modes = [str(m) for m in maps["interpolation"].values]
    ys = np.arange(roughness.shape[0]) if ys is None else np.asarray(ys)
    xs = np.arange(roughness.shape[1]) if xs is None else np.asarray(xs)
    extent = _extent(ys, xs)
    # one row per method, one column per interpolation; the first row shows the design
    rows, cols = 1 + len(methods), max(len(modes), 2)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False)
    _field_panel(axes[0, 0], fig, roughness, extent, "input roughness", r"height [$\delta$]")
    axes[0, 0].annotate(
        "flow", xy=(0.5, 0.9), xytext=(0.06, 0.9), xycoords="axes fraction", fontsize=7,
        va="center", arrowprops={"arrowstyle": "->", "lw": 1.2},
    )  # fmt: skip
    if contribution is not None:
        _field_panel(
            axes[0, 1], fig, contribution, extent, "ground truth (exact contribution)",
            r"[$U_e/\delta$ per cell]",
        )  # fmt: skip
    for j in range(1 if contribution is None else 2, cols):
        axes[0, j].axis("off")
    units = dict(zip(methods, maps["method_units"].values, strict=True))
    for i, method in enumerate(methods, start=1):
        values = maps["attribution"].sel({"method": method})
        limit = float(np.abs(values.values).max()) or 1.0
        name = method if METHODS[method].recommended else f"{method} (not recommended)"
        for j, mode in enumerate(modes):
            _field_panel(
                axes[i, j], fig, values.sel(interpolation=mode).values, extent,
                f"{name}\n{ROW_TITLES.get(mode, mode)}", _units_label(str(units[method])),
                limit=limit,
            )  # fmt: skip
        for j in range(len(modes), cols):
            axes[i, j].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(r"$x/\delta$ (streamwise)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$y/\delta$ (spanwise)", fontsize=7)
    pred = float(maps["prediction"])
    head = f"{title}: " if title else ""
    sim = f", simulated {simulated:.4f}" if simulated is not None else ""
    fig.suptitle(
        rf"{head}predicted max vorticity {pred:.4f}{sim} $U_e/\delta$; layer {maps.attrs['layer']}",
        fontsize=9,
        y=1.0,
        va="bottom",
    )
    fig.tight_layout()
    return save_figure(fig, stem)
