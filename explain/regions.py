"""The regions of a roughness patch that drive a prediction, read off one attribution map.

"Weak localisation": threshold the map, label the connected cells, describe each component by
its box, area, centroid and the heights it covers. Nothing is fitted; a region says where a map
is large, not that the model would respond to an edit there (:mod:`explain.whatif` tests that).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from data.errors import InputError

# 8-connectivity: cells that touch at a corner belong to one region
_CONNECTIVITY = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Region:
    """One connected region of an attribution map, all lengths in delta.

    Attributes:
        rank: 1 for the region with the largest ``|attribution|``, then 2, 3, ...
        sign: +1 if the region raises the prediction, -1 if it lowers it.
        attribution: Sum of the map over the region, in the map's units.
        share: ``|attribution|`` over the sum of ``|map|`` over the whole patch, in [0, 1].
        cells: Number of cells in the region.
        area: ``cells * dy * dx`` in delta^2.
        centroid_y: Spanwise centroid weighted by ``|map|``, in delta.
        centroid_x: Streamwise centroid weighted by ``|map|``, in delta.
        box: ``(y0, y1, x0, x1)``: the outer cell edges of the region's bounding box, in delta.
        peak_height: Largest height in the region, in delta.
        mean_height: Mean height over the region's cells, in delta.
        mask: The region's cells, bool ``(y, x)`` (not compared, not printed).
    """

    rank: int
    sign: int
    attribution: float
    share: float
    cells: int
    area: float
    centroid_y: float
    centroid_x: float
    box: tuple[float, float, float, float]
    peak_height: float
    mean_height: float
    mask: np.ndarray = field(compare=False, repr=False)

    def row(self) -> dict[str, float | int]:
        """Every field but the mask as one flat dict (the box as ``box_y0`` ... ``box_x1``)."""
        y0, y1, x0, x1 = self.box
        return {
            "rank": self.rank, "sign": self.sign, "attribution": self.attribution,
            "share": self.share, "cells": self.cells, "area": self.area,
            "centroid_y": self.centroid_y, "centroid_x": self.centroid_x,
            "box_y0": y0, "box_y1": y1, "box_x0": x0, "box_x1": x1,
            "peak_height": self.peak_height, "mean_height": self.mean_height,
        }  # fmt: skip


def _spacing(centres: np.ndarray, name: str) -> float:
    """The uniform spacing of the cell centres ``centres`` (1 for a single cell); one-line error."""
    if centres.size < 2:
        return 1.0
    steps = np.diff(centres)
    if not (np.all(np.isfinite(steps)) and steps[0] > 0 and np.allclose(steps, steps[0])):
        raise InputError(f"{name} must be increasing cell centres with uniform spacing")
    return float(steps[0])


def _check(
    attribution: object, heights: object, ys: object, xs: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four inputs as float arrays of matching shapes and uniform spacing, or a one-line
    error naming the one that is not."""
    a = np.asarray(attribution, dtype=float)
    h = np.asarray(heights, dtype=float)
    y = np.asarray(ys, dtype=float)
    x = np.asarray(xs, dtype=float)
    if a.ndim != 2:
        raise InputError(f"attribution must be (y, x), got shape {a.shape}")
    if h.shape != a.shape:
        raise InputError(f"heights have shape {h.shape}; expected the attribution's {a.shape}")
    if y.shape != (a.shape[0],) or x.shape != (a.shape[1],):
        raise InputError(
            f"ys and xs have lengths {y.shape} and {x.shape}; expected ({a.shape[0]},) "
            f"and ({a.shape[1]},) for an attribution of shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise InputError("attribution has NaN or Inf values; expected a finite map")
    if not np.all(np.isfinite(h)):
        raise InputError("heights have NaN or Inf values; expected finite heights")
    _spacing(y, "ys")
    _spacing(x, "xs")
    return a, h, y, x


def _describe(
    mask: np.ndarray, sign: int, a: np.ndarray, h: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> Region:
    """The :class:`Region` of the cells ``mask`` (rank 0 until ranked)."""
    dy, dx = _spacing(ys, "ys"), _spacing(xs, "xs")
    weight = np.abs(a) * mask
    rows, cols = np.nonzero(mask)
    attribution = float(a[mask].sum())
    y0, y1 = float(ys[rows.min()]), float(ys[rows.max()])
    x0, x1 = float(xs[cols.min()]), float(xs[cols.max()])
    return Region(
        rank=0,
        sign=sign,
        attribution=attribution,
        share=abs(attribution) / float(np.abs(a).sum()),
        cells=int(mask.sum()),
        area=float(mask.sum() * dy * dx),
        centroid_y=float((weight.sum(axis=1) * ys).sum() / weight.sum()),
        centroid_x=float((weight.sum(axis=0) * xs).sum() / weight.sum()),
        box=(y0 - dy / 2, y1 + dy / 2, x0 - dx / 2, x1 + dx / 2),
        peak_height=float(h[mask].max()),
        mean_height=float(h[mask].mean()),
        mask=mask,
    )


def find_regions(
    attribution: np.ndarray,
    heights: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    threshold: float = 0.5,
    min_cells: int = 2,
    max_regions: int = 5,
) -> list[Region]:
    """The regions where a signed map is large, most important first.

    The rule (threshold, label, box): with ``peak = max |attribution|`` over the whole patch,
    a cell is a candidate of the positive part if ``attribution >= threshold * peak`` and of
    the negative part if ``attribution <= -threshold * peak``. Each part is labelled
    separately into connected components with ``scipy.ndimage.label`` and 8-connectivity
    (cells touching at a corner connect), so a region never mixes signs. The spanwise
    direction is periodic in the physics, but labelling does **not** wrap: a region
    crossing the spanwise edge is reported as two. Components of fewer than ``min_cells``
    cells are dropped; the rest are ranked by ``|sum of the map over the region|``,
    descending, and the first ``max_regions`` kept.

    Args:
        attribution: Signed map ``(y, x)``; positive raises the prediction.
        heights: Roughness heights ``(y, x)`` in delta.
        ys: Spanwise cell centres ``(y,)`` in delta, uniformly spaced.
        xs: Streamwise cell centres ``(x,)`` in delta, uniformly spaced (flow towards +x).
        threshold: Fraction of the peak ``|attribution|`` a cell must reach, in ``(0, 1]``.
        min_cells: Smallest region kept, in cells (>= 1).
        max_regions: Most regions returned (>= 1).

    Returns:
        Up to ``max_regions`` :class:`Region`, ranked 1, 2, ...; empty for an all-zero map.

    Raises:
        InputError: Shapes that do not match, a non-finite map or heights, or bad options.
    """
    a, h, ys, xs = _check(attribution, heights, ys, xs)
    if not 0 < threshold <= 1:
        raise InputError(f"threshold must be in (0, 1], got {threshold!r}")
    for name, value in (("min_cells", min_cells), ("max_regions", max_regions)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak == 0:
        return []
    found = []
    for sign in (1, -1):
        labels, count = ndimage.label(sign * a >= threshold * peak, structure=_CONNECTIVITY)
        for label in range(1, count + 1):
            mask = labels == label
            if mask.sum() >= min_cells:
                found.append(_describe(mask, sign, a, h, ys, xs))
    found.sort(key=lambda r: -abs(r.attribution))  # stable: ties keep positive-first order
    return [replace(r, rank=i) for i, r in enumerate(found[:max_regions], start=1)]
