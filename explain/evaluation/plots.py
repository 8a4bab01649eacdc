"""Plots of an evaluation: mean deletion/insertion curves and the randomisation cascade.

Legends sit outside the axes (to the right of each panel, or below the figure) so they never
cover a curve; every quantity on an axis is a ratio or a similarity, marked dimensionless.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from data.figures import save_figure
from explain.catalogue import METHODS
from explain.evaluation import table as keys


def _style(method: str) -> dict:
    return {"ls": "-" if METHODS[method].recommended else ":", "lw": 1.2}


def curves_plot(ev, stem: Path) -> list[Path]:
    """Mean normalised output vs fraction of cells deleted/inserted, one panel per curve kind.

    Each panel's legend (methods with their AUC) sits to the right of the panel.
    """
    baselines = list(ev.curves)
    fig, axes = plt.subplots(
        2, len(baselines), figsize=(6.8 * len(baselines), 7), squeeze=False, sharex=True,
        layout="constrained",
    )  # fmt: skip
    steps = np.linspace(0, 1, ev.settings["steps"] + 1)
    column = {"deletion": keys.deletion, "insertion": keys.insertion}
    for j, b in enumerate(baselines):
        for i, kind in enumerate(("deletion", "insertion")):
            ax = axes[i, j]
            for m, method in enumerate(ev.methods):
                auc = ev.table[method][column[kind](b)]
                ax.plot(
                    steps, ev.curves[b][kind][m], label=f"{method} ({auc:.3f})", **_style(method)
                )
            rnd = float(np.mean(ev.random[b][f"{kind}_auc"]))
            ax.axhline(rnd, color="0.5", lw=0.8, ls="--", label=f"random order (AUC {rnd:.3f})")
            ax.set_title(f"{kind}, baseline: {b}", fontsize=9)
            ax.set_ylabel(r"$(f(x_t) - f(b)) / (f(x) - f(b))$ [dimensionless]", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(
                fontsize=6, title="method (AUC)", title_fontsize=6, loc="upper left",
                bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
            )  # fmt: skip
        axes[-1, j].set_xlabel("fraction of cells ranked first [dimensionless]", fontsize=8)
    fig.suptitle(
        f"Deletion (lower is better) and insertion (higher is better), mean over "
        f"{ev.settings['samples']} designs; dotted = not recommended",
        fontsize=9,
    )
    return save_figure(fig, stem)


def cascade_plot(ev, stem: Path) -> list[Path]:
    """Similarity to the original maps as layers are re-initialised from the output inwards.

    One legend for both panels, below them.
    """
    steps = list(ev.cascade.steps)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True, layout="constrained")
    for ax, measure, label in zip(
        axes, ("spearman_abs", "ssim"), ("Spearman of |maps|", "SSIM"), strict=True
    ):
        for method in ev.methods:
            values = ev.cascade.values[method][measure]
            mean = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values]
            ax.plot(range(len(steps)), mean, marker="o", ms=2.5, label=method, **_style(method))
        ax.axhline(0.5, color="0.4", lw=0.8, ls="--", label="pass threshold")
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([s.replace("network.", "") for s in steps], rotation=75, fontsize=6)
        ax.set_ylabel(f"{label} with the original maps [dimensionless]", fontsize=8)
        ax.set_xlabel("re-initialised up to (layer; cascading, output first)", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=6)
    fig.suptitle(
        f"Model-parameter randomisation, {ev.settings['sanity_samples']} designs: maps must "
        "change (fall towards 0); dotted = not recommended",
        fontsize=9,
    )
    return save_figure(fig, stem)
