"""Agreement with the truth layer by layer: the cheap layer methods at every on-grid layer.

A layer map can be no finer than its layer's grid, and a deeper layer is coarser but closer to
the output. :func:`layer_sweep` computes the one-pass layer methods (one forward and one
backward pass per design and layer: CAM, Grad-CAM, HiResCAM, LayerCAM, Grad-CAM++) at every
candidate layer whose map lies on the roughness grid, scores them against the truth as the
protocol does (``gt_spearman_input``, ``gt_spearman_native``), and sets each beside the
resolution ceiling of that layer's grid (:func:`~explain.evaluation.groundtruth.grid_ceiling`).
A method that is undefined at a layer (CAM away from a pooled linear head) is skipped there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.errors import InputError
from explain.api import DEFAULT_METHODS, Explainer, cam_applies
from explain.catalogue import METHODS
from explain.evaluation import table as keys
from explain.evaluation.groundtruth import (
    MIN_MARGIN,
    block_sum,
    grid_ceiling,
    kept_samples,
    truth_spearman,
)
from explain.layers import LayerInfo, feature_layers

SWEEP_METHODS = tuple(
    name for name, m in METHODS.items() if m.resolution == "layer" and m.one_pass
)  # the layer methods cheap enough to compute at every layer


@dataclass(frozen=True)
class LayerScore:
    """Agreement with the truth of one method at one layer: means over the designs scored.

    Attributes:
        layer: Module name.
        height, width: The layer map's grid ``(h, w)``, in layer cells.
        cell: Input cells per layer cell along each axis (the layer's resolution).
        method: Method name.
        designs: Designs scored, those with ``peak_margin >= MIN_MARGIN``.
        spearman_input: Spearman rho with the truth at input resolution (``gt_spearman_input``).
        spearman_native: Spearman rho at the layer's grid with the block-summed truth
            (``gt_spearman_native``).
        ceiling: The resolution ceiling of the layer's grid (``eb_grid_ceiling``).
    """

    layer: str
    height: int
    width: int
    cell: int
    method: str
    designs: int
    spearman_input: float
    spearman_native: float
    ceiling: float

    @property
    def ceiling_fraction(self) -> float:
        """``spearman_input / ceiling``, the share of what the grid allows; NaN if ceiling <= 0."""
        return self.spearman_input / self.ceiling if self.ceiling > 0 else float("nan")

    def row(self) -> dict[str, str | int | float]:
        """The row of ``layers.csv`` and ``summary.json``, keyed by :data:`table.LAYER_COLUMNS`."""
        values = (
            self.layer, self.height, self.width, self.cell, self.method, self.designs,
            self.spearman_input, self.spearman_native, self.ceiling, self.ceiling_fraction,
        )  # fmt: skip
        return dict(zip(keys.LAYER_COLUMNS, values, strict=True))


def sweep_layers(
    model: nn.Module, shape: tuple[int, int], names: Sequence[str] | None = None
) -> list[LayerInfo]:
    """The feature layers on the input grid ``shape`` in forward order, or those ``names``.

    See :func:`explain.layers.feature_layers`: every candidate layer whose map lies on the
    input grid, from the first module with parameters on.
    """
    layers = feature_layers(model, shape)
    if names is None:
        return layers
    known = {info.name: info for info in layers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"layer(s) {unknown}: no feature map on the input grid; {list(known)}")
    return [known[n] for n in names]


def _scores_at(
    model: nn.Module,
    x: torch.Tensor,
    truth: np.ndarray,
    info: LayerInfo,
    methods: Sequence[str],
    interpolation: str,
    batch_size: int,
    chunk: int,
) -> dict[str, tuple[float, float]]:
    """``{method: (mean rho at input resolution, mean rho at the layer's grid)}`` at one layer.

    Raises:
        InputError: A method is undefined at this layer ('cam' without a pooled linear head).
    """
    shape = tuple(x.shape[-2:])
    explainer = Explainer(model, shape, methods, info.name, (interpolation,), chunk=chunk)
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
        m: ([], []) for m in explainer.methods
    }
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        _, native = explainer.maps(x[rows].to(explainer.device))
        full = explainer.on_input_grid(native, interpolation).cpu().numpy()
        blocks = block_sum(truth[rows], (info.height, info.width))
        for i, m in enumerate(explainer.methods):
            rectified = METHODS[m].rectified
            parts[m][0].append(truth_spearman(full[:, i], truth[rows], rectified))
            parts[m][1].append(truth_spearman(native[m].cpu().numpy(), blocks, rectified))
    explainer.check_cam()
    return {
        m: (keys.finite_mean(np.concatenate(a)), keys.finite_mean(np.concatenate(b)))
        for m, (a, b) in parts.items()
    }


def sweep_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` without repeats, checked to be one-pass layer methods (:data:`SWEEP_METHODS`)."""
    bad = [m for m in methods if m not in SWEEP_METHODS]
    if bad or not methods:
        raise InputError(
            f"layer sweep: method(s) {bad or '(none given)'} cannot be swept; "
            f"one-pass layer methods: {list(SWEEP_METHODS)}"
        )
    return list(dict.fromkeys(methods))


def layer_sweep(
    model: nn.Module,
    roughness: np.ndarray,
    truth: np.ndarray,
    peak_margin: np.ndarray,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    layers: Sequence[str] | None = None,
    interpolation: str = "bilinear",
    batch_size: int = 50,
    chunk: int = 1024,
    progress: bool = False,
) -> list[LayerScore]:
    """Score ``methods`` against the truth at every on-grid layer of ``model``.

    Args:
        model: Any module mapping roughness ``(B, 1, y, x)`` in delta to ``(B,)``.
        roughness: Designs ``(sample, y, x)`` in delta.
        truth: Exact contribution ``(sample, y, x)`` in ``U_e/delta``.
        peak_margin: ``(sample,)``; designs below ``MIN_MARGIN`` (5%) are left out.
        methods: One-pass layer methods (:data:`SWEEP_METHODS`); 'cam' is skipped at the
            layers where it is undefined.
        layers: Layer names; default every feature layer on the input grid
            (:func:`sweep_layers`), in forward order (a container repeats its last child).
        interpolation: How layer maps reach the input grid, for the scores and the ceiling.
        batch_size: Designs per pass.
        chunk: Inputs per forward pass (passed to :class:`~explain.api.Explainer`).
        progress: Show a progress bar over the layers.

    Returns:
        One :class:`LayerScore` per layer and method defined there, in layer order; empty
        when no design has a clear peak.
    """
    methods = sweep_methods(methods)
    truth = np.asarray(truth, dtype=np.float64)
    kept = kept_samples(truth, peak_margin, MIN_MARGIN)
    if not len(kept):
        return []
    x = torch.as_tensor(np.asarray(roughness)[kept], dtype=torch.float32)[:, None]
    truth = truth[kept]
    shape = (int(x.shape[-2]), int(x.shape[-1]))
    ceilings: dict[tuple[int, int], float] = {}
    out: list[LayerScore] = []
    infos = sweep_layers(model, shape, layers)
    for info in tqdm(infos, desc="layer sweep", unit="layer", disable=not progress):
        grid = (info.height, info.width)
        if grid not in ceilings:
            ceilings[grid] = keys.finite_mean(grid_ceiling(truth, grid, interpolation))
        # CAM is defined only where the layer feeds a pooled linear head
        here = [m for m in methods if m != "cam" or cam_applies(model, shape, info.name)]
        if not here:
            continue
        scores = _scores_at(model, x, truth, info, here, interpolation, batch_size, chunk)
        out += [
            LayerScore(
                info.name, *grid, shape[0] // info.height, m, len(kept), *scores[m], ceilings[grid]
            )
            for m in methods
            if m in scores
        ]
    return out
