"""What-if edits of the regions a map points at, and the model's answer to them.

A region from :func:`explain.regions.find_regions` is a claim: "these cells drive the
prediction". Here it is put to the model: the region is smoothed (towards the smooth wall or the
blurred design) with a soft edge, and the change of the prediction is compared with the change
from smoothing a random region of the same shape and size. For gradient-type maps,
:func:`finite_difference_check` compares the map's first-order prediction with a central
difference of the model. Edits are numpy; torch is used only to call the model (and through the
shared blur of :mod:`explain.baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from data.errors import InputError
from explain.baselines import blurred
from explain.batching import model_device, one_per_input
from explain.hooks import eval_mode
from explain.inputs import roughness_batch
from explain.regions import Region

TARGETS = ("wall", "blurred")
# the blurred target is the "blurred" baseline of explain.baselines: a Gaussian of 4 cells
BLUR_SIGMA_CELLS = 4.0


def _mask(mask: object, name: str = "mask", shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``mask`` as a non-empty bool array ``(y, x)`` (of ``shape`` if given); one-line error."""
    m = np.asarray(mask)
    if m.dtype != bool or m.ndim != 2:
        raise InputError(f"{name} must be a bool array (y, x), got {m.dtype} of shape {m.shape}")
    if shape is not None and m.shape != shape:
        raise InputError(f"{name} has shape {m.shape}; expected the heights' {shape}")
    if not m.any():
        raise InputError(f"{name} selects no cell; expected at least one")
    return m


def _heights(heights: object) -> np.ndarray:
    """``heights`` as a finite float64 array ``(y, x)``; one-line error."""
    h = np.asarray(heights, dtype=np.float64)
    if h.ndim != 2:
        raise InputError(f"heights must be (y, x), got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise InputError("heights have NaN or Inf values; expected finite heights")
    return h


def taper(mask: np.ndarray, cells: int = 2) -> np.ndarray:
    """Edit weight ``(y, x)`` in [0, 1]: 1 on the region, a cosine fall to 0 outside it.

    With ``d`` the Euclidean distance in cells from a cell to the nearest region cell
    (``scipy.ndimage.distance_transform_edt``), the weight is ``(1 + cos(pi d / (cells + 1))) / 2``
    for ``d < cells + 1`` and 0 beyond: ``cells`` cells of soft edge along the axes
    (0.75 and 0.25 for ``cells = 2``), none for ``cells = 0``. The edge does not wrap spanwise.
    """
    m = _mask(mask)
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 0:
        raise InputError(f"cells must be an integer >= 0, got {cells!r}")
    d = ndimage.distance_transform_edt(~m)
    return np.where(d < cells + 1, 0.5 * (1 + np.cos(np.pi * d / (cells + 1))), 0.0)


def smooth_region(
    heights: np.ndarray,
    mask: np.ndarray,
    to: str = "wall",
    cells: int = 2,
    sigma: float = BLUR_SIGMA_CELLS,
) -> np.ndarray:
    """The heights with one region blended towards a smoother surface, ``(y, x)`` in delta.

    ``h' = h + w (target - h)`` with ``w = taper(mask, cells)``: the region takes the target's
    heights, cells farther than ``cells`` from it keep their own. ``to="wall"`` targets the
    smooth wall ``h = 0``; ``to="blurred"`` the design blurred with a Gaussian of ``sigma``
    cells (:func:`explain.baselines.blurred`, reflect padding; 4 cells is the ``blurred``
    baseline of the attribution methods).
    """
    h = _heights(heights)
    w = taper(_mask(mask, shape=h.shape), cells)
    if to == "wall":
        target = np.zeros_like(h)
    elif to == "blurred":
        target = blurred(torch.from_numpy(h)[None, None], sigma)[0, 0].numpy()
    else:
        raise InputError(f"unknown smoothing target {to!r}; choose from {list(TARGETS)}")
    return h + w * (target - h)


def random_region_like(
    mask: np.ndarray, rng: np.random.Generator, avoid: np.ndarray | None = None
) -> np.ndarray:
    """A region of the same shape and cell count as ``mask``, moved by a random offset.

    The offset is spanwise periodic (any shift, the pattern wraps round the spanwise edge, as
    the flow does) and streamwise bounded (the pattern stays inside the patch). It is drawn
    uniformly among the offsets, other than none, whose region shares the fewest cells with
    ``avoid`` (none, where possible); without ``avoid`` among all offsets but none. Only if no
    other offset exists is the mask itself returned.
    """
    m = _mask(mask)
    blocked = np.zeros_like(m) if avoid is None else _mask(avoid, "avoid", m.shape)
    cols = np.nonzero(m.any(axis=0))[0]
    shifts_x = np.arange(-cols[0], m.shape[1] - cols[-1])
    offsets = [(sy, sx) for sy in range(m.shape[0]) for sx in shifts_x if (sy, sx) != (0, 0)]
    if not offsets:
        return m.copy()
    overlap = np.array([np.count_nonzero(_moved(m, sy, sx) & blocked) for sy, sx in offsets])
    best = np.flatnonzero(overlap == overlap.min())
    return _moved(m, *offsets[int(rng.choice(best))])


def _moved(mask: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """``mask`` rolled by ``sy`` rows (periodic) and shifted by ``sx`` columns (kept inside)."""
    return np.roll(mask, (sy, sx), axis=(0, 1))


def predict(model: nn.Module, heights_batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """The model's predictions ``(batch,)`` as float64, for heights ``(batch[, 1], y, x)``.

    One forward pass in eval mode (restored after) under ``torch.no_grad``, on the model's
    device, in the dtype of the model's floating weights (float32 for a model without any).
    """
    if not isinstance(heights_batch, torch.Tensor):  # float64 until the model's dtype is known
        heights_batch = torch.from_numpy(np.asarray(heights_batch, dtype=np.float64))
    x = roughness_batch(heights_batch, "heights_batch", channel_optional=True)
    floats = [t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    x = x.to(device=model_device(model), dtype=floats[0] if floats else torch.float32)
    with eval_mode(model), torch.no_grad():
        y = one_per_input(model(x), x.shape[0])
    return y.detach().cpu().numpy().astype(np.float64)


def what_if_designs(
    heights: np.ndarray,
    regions: Sequence[Region],
    rng: np.random.Generator,
    to: Sequence[str] = TARGETS,
    cells: int = 2,
) -> tuple[list[dict[str, float | int | str]], np.ndarray, list[np.ndarray]]:
    """The edited designs of :func:`what_ifs` and a row describing each, without a model.

    Returns:
        ``(rows, designs, masks)``: one dict per edit (``rank``, ``sign``, ``edit``, ``to``,
        ``cells``), the heights ``(1 + edits, y, x)``, the unedited design first, so that a
        caller can pass the same designs to several models or to the physics, and each
        edit's region mask.
    """
    h = _heights(heights)
    bad = [t for t in to if t not in TARGETS]
    if bad:
        raise InputError(f"unknown smoothing target {bad[0]!r}; choose from {list(TARGETS)}")
    masks = [_mask(r.mask, f"region {r.rank} mask", h.shape) for r in regions]
    avoid = np.logical_or.reduce(masks) if masks else None
    rows, designs, edited_masks = [], [h], []
    for region, mask in zip(regions, masks, strict=True):
        edits = [("region", t, mask) for t in to]
        edits.append(("random", "wall", random_region_like(mask, rng, avoid=avoid)))
        for edit, target, edited in edits:
            designs.append(smooth_region(h, edited, target, cells))
            edited_masks.append(edited)
            rows.append(
                {"rank": region.rank, "sign": region.sign, "edit": edit, "to": target,
                 "cells": int(edited.sum())}
            )  # fmt: skip
    return rows, np.stack(designs), edited_masks


def what_ifs(
    model: nn.Module,
    heights: np.ndarray,
    regions: Sequence[Region],
    rng: np.random.Generator,
    to: Sequence[str] = TARGETS,
    cells: int = 2,
) -> list[dict[str, float | int | str]]:
    """The prediction before and after smoothing each region, beside a random equal region.

    For each region, one row per target in ``to`` (``edit="region"``) and one row for a
    random region of the same shape (:func:`random_region_like`, avoiding every region given)
    smoothed to the wall (``edit="random"``): the reference a region's change should exceed.
    All edited designs go through the model in one call (:func:`what_if_designs`).

    Returns:
        One flat dict per edit: ``rank``, ``sign`` (of the region), ``edit``, ``to``,
        ``cells`` (of the edited region), ``before``, ``after`` and ``change = after - before``
        in the model's output units.
    """
    rows, designs, _ = what_if_designs(heights, regions, rng, to, cells)
    if not rows:
        return []
    y = predict(model, designs)
    for row, after in zip(rows, y[1:], strict=True):
        row.update(before=float(y[0]), after=float(after), change=float(after - y[0]))
    return rows


def finite_difference_check(
    model: nn.Module,
    heights: np.ndarray,
    attribution: np.ndarray,
    mask: np.ndarray,
    epsilon: float = 1e-3,
) -> dict[str, float]:
    """A gradient map's claim along one direction against the model's central difference.

    Only for gradient-type maps (output per delta of height, a local sensitivity); the caller
    decides whether a map is one. With the direction ``d = mask`` (1 on the region, 0
    elsewhere), the model's ``(f(h + eps d) - f(h - eps d)) / (2 eps)`` is compared with the
    first-order prediction ``sum(attribution * d)``.

    Returns:
        ``finite_difference`` and ``first_order`` (output units per delta), ``ratio``
        (first order over finite difference) and ``relative_error``
        (``|first_order - finite_difference| / |finite_difference|``); NaN where dividing by 0.
    """
    h = _heights(heights)
    a = np.asarray(attribution, dtype=np.float64)
    if a.shape != h.shape:
        raise InputError(f"attribution has shape {a.shape}; expected the heights' {h.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("attribution has NaN or Inf values; expected a finite map")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon must be a positive height in delta, got {epsilon!r}")
    d = _mask(mask, shape=h.shape).astype(np.float64)
    up, down = predict(model, np.stack([h + epsilon * d, h - epsilon * d]))
    fd = float((up - down) / (2 * epsilon))
    first = float((a * d).sum())
    ratio = first / fd if fd else float("nan")
    error = abs(first - fd) / abs(fd) if fd else float("nan")
    return {"epsilon": float(epsilon), "finite_difference": fd, "first_order": first,
            "ratio": ratio, "relative_error": error}  # fmt: skip
