"""Evaluation plots: files written, legends outside the axes, axis labels with units.

A small stand-in for an :class:`explain.evaluation.protocol.Evaluation` holds only what the
plots read, so these tests do not depend on running the protocol.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

import explain.evaluation.plots as plots
from explain.evaluation import table as keys

METHODS = ["hirescam", "guided-backprop", "integrated-gradients"]
BASELINES = ["smooth-wall", "blurred"]
STEPS = 8


@pytest.fixture
def ev() -> SimpleNamespace:
    """Curves falling (deletion) and rising (insertion) towards the random reference."""
    t = np.linspace(0, 1, STEPS + 1)
    deletion = np.stack([(1 - t) ** (m + 1) for m in range(len(METHODS))])
    insertion = np.stack([t ** (1 / (m + 1)) for m in range(len(METHODS))])
    curves = {b: {"deletion": deletion, "insertion": insertion} for b in BASELINES}
    aucs = {column: 0.5 for b in BASELINES for column in (keys.deletion(b), keys.insertion(b))}
    table = {m: aucs for m in METHODS}
    random = {
        b: {"deletion_auc": np.full(4, 0.5), "insertion_auc": np.full(4, 0.5)} for b in BASELINES
    }
    rng = np.random.default_rng(0)
    cascade = SimpleNamespace(
        steps=("original", "network.head", "network.features.stage2", "network.features.stage1"),
        values={
            m: {k: rng.uniform(0, 1, (4, 3)) for k in ("spearman_abs", "ssim")} for m in METHODS
        },
    )
    settings = {"steps": STEPS, "samples": 4, "sanity_samples": 3}
    return SimpleNamespace(
        methods=METHODS, curves=curves, table=table, random=random, cascade=cascade,
        settings=settings,
    )  # fmt: skip


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch):
    """The figure a plot function made, drawn but not saved."""
    figures: list[plt.Figure] = []

    def keep(fig: plt.Figure, stem: Path) -> list[Path]:
        fig.canvas.draw()
        figures.append(fig)
        return [stem]

    monkeypatch.setattr(plots, "save_figure", keep)
    yield figures
    for fig in figures:
        plt.close(fig)


def overlaps(a, b) -> bool:
    """Whether two display-space boxes share more than an edge."""
    return a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1


def test_both_plots_write_png_and_pdf(ev: SimpleNamespace, tmp_path: Path) -> None:
    for plot in (plots.curves_plot, plots.cascade_plot):
        stem = tmp_path / plot.__name__
        written = plot(ev, stem)
        assert [p.name for p in written] == [f"{stem.name}.png", f"{stem.name}.pdf"]
        assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_legends_sit_beside_their_panels(ev: SimpleNamespace, drawn) -> None:
    plots.curves_plot(ev, Path("curves"))
    (fig,) = drawn
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 2 * len(BASELINES)
    boxes = [ax.get_window_extent() for ax in axes]
    for ax in axes:
        legend = ax.get_legend().get_window_extent()
        assert not any(overlaps(legend, box) for box in boxes), ax.get_title()
    for ax in axes:
        assert "dimensionless" in ax.get_ylabel()
    assert all("dimensionless" in ax.get_xlabel() for ax in axes if ax.get_xlabel())


def test_cascade_has_one_legend_below_the_panels(ev: SimpleNamespace, drawn) -> None:
    plots.cascade_plot(ev, Path("cascade"))
    (fig,) = drawn
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert all(not overlaps(box, ax.get_window_extent()) for ax in fig.axes)
    assert len(legend.get_texts()) == len(METHODS) + 1  # and the pass threshold
    assert all("dimensionless" in ax.get_ylabel() for ax in fig.axes if ax.get_ylabel())
