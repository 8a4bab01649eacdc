"""Plot of the layer sweep: each method's agreement with the truth at every layer, and the ceiling.

Kept beside :mod:`explain.evaluation.plots` (curves, cascade) in the same style: legends outside
the axes, every quantity a similarity or a ratio, marked dimensionless.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from data.figures import save_figure
from explain.evaluation.layers import LayerScore


def layers_plot(layers: list[LayerScore], interpolation: str, stem: Path) -> list[Path]:
    """Spearman with the truth per layer against the grid's ceiling, and the share reached.

    Args:
        layers: The sweep's rows, in layer order (:func:`explain.evaluation.layers.layer_sweep`).
        interpolation: How the maps reached the input grid, named in the title.
        stem: Output path without extension; ``.png`` and ``.pdf`` are written.
    """
    names = list(dict.fromkeys(r.layer for r in layers))
    at = {name: i for i, name in enumerate(names)}
    ceiling = {r.layer: r.ceiling for r in layers}
    width = max(7.0, 0.32 * len(names) + 3)
    fig, axes = plt.subplots(2, 1, figsize=(width, 6.8), sharex=True, layout="constrained")
    axes[0].plot(
        range(len(names)), [ceiling[n] for n in names], "k--", lw=1, drawstyle="steps-mid",
        label="grid ceiling",
    )  # fmt: skip
    for method in dict.fromkeys(r.method for r in layers):
        rows = [r for r in layers if r.method == method]
        x = [at[r.layer] for r in rows]
        axes[0].plot(x, [r.spearman_input for r in rows], marker="o", ms=3, label=method)
        axes[1].plot(x, [r.ceiling_fraction for r in rows], marker="o", ms=3, label=method)
    axes[0].set_ylabel("Spearman with the truth [dimensionless]", fontsize=8)
    axes[1].set_ylabel("share of the grid ceiling [dimensionless]", fontsize=8)
    for ax in axes:
        ax.axhline(0, color="0.5", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    axes[1].set_xticks(range(len(names)))
    axes[1].set_xticklabels([n.replace("network.", "") for n in names], rotation=75, fontsize=6)
    axes[1].set_xlabel("explained layer (input side first)", fontsize=8)
    designs = layers[0].designs if layers else 0
    fig.suptitle(
        f"Agreement with the exact contribution at every layer, {designs} designs; maps "
        f"{interpolation} on the input grid",
        fontsize=9,
    )
    return save_figure(fig, stem)
