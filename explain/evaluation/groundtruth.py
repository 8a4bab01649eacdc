"""Attribution maps scored against a synthetic campaign's exact ground truth.

Synthetic campaigns carry ``contribution`` ``(sample, y, x)`` in ``U_e/delta``: the signed share of
each cell in the simulated maximum vorticity (it sums to that maximum), and ``peak_margin``
``(sample,)``, the relative gap between the wake's vorticity peak and its best rival. The scores
follow ``shared/reference/saliency-evaluation.md``, section "Ground truth":

- Spearman rho between map and truth at input resolution and at the layer's resolution (truth
  block-summed onto the layer's cells); signed maps against the signed truth, rectified maps
  (non-negative by construction) against its positive part.
- Relevance mass accuracy (RMA), relevance rank accuracy (RRA) and the pointing game against a mask
  of the top ``fraction`` of cells by ``|truth|`` or by positive truth.
- IoU of ``{map >= tau max(map)}`` with the mask, ``tau`` swept ``0.1 ... 0.9``.
- Samples with ``peak_margin`` below 5% (an ambiguous truth) are left out and counted.
- The resolution ceiling of a coarser grid (:func:`grid_ceiling`): the truth block-summed onto
  it and brought back, against the truth itself.

Every function is vectorised over the sample axis. Ties are resolved so that the result does not
depend on the order of the cells, except in :func:`truth_mask`, which must pick exactly ``K`` cells
and breaks ties at its threshold by row-major cell index (the lower index wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.errors import InputError
from explain.evaluation.similarity import spearman
from explain.interpolation import upsample

KINDS = ("abs", "positive")
DEFAULT_TAUS = np.round(np.arange(0.1, 1.0, 0.1), 10)


MIN_MARGIN = 0.05  # designs whose peak margin is below this are left out (ambiguous peak)


def _check_maps(name: str, maps: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``maps`` as finite float64 ``(sample, y, x)``, of ``shape`` if given."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise InputError(f"{name} must be (sample, y, x), got shape {maps.shape}")
    if shape is not None and maps.shape != shape:
        raise InputError(f"{name} must have shape {shape} like the mask/truth, got {maps.shape}")
    if not np.isfinite(maps).all():
        raise InputError(f"{name} holds non-finite values; only finite maps can be scored")
    return maps


def _flat(maps: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checked maps and boolean mask, both flattened to ``(sample, cells)``."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise InputError(f"mask must be boolean (see truth_mask), got dtype {mask.dtype}")
    maps = _check_maps("maps", maps, mask.shape)
    cells = maps.shape[1] * maps.shape[2]  # explicit: -1 cannot be inferred for 0 samples
    return maps.reshape(len(maps), cells), mask.reshape(len(mask), cells)


def block_sum(truth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum of ``truth`` over the block of input cells each layer cell covers.

    Args:
        truth: ``(sample, Y, X)``, e.g. ``contribution`` in ``U_e/delta``.
        shape: The layer's ``(h, w)``; ``Y`` and ``X`` must be whole multiples of ``h`` and ``w``
            (layer cell ``(i, j)`` covers input rows ``i*Y/h ... (i+1)*Y/h - 1``, the cell-aligned
            blocks of ``align_corners=False``).

    Returns:
        ``(sample, h, w)`` in the units of ``truth``; the total per sample is unchanged.
    """
    truth = _check_maps("truth", truth)
    b, big_y, big_x = truth.shape
    h, w = shape
    if h < 1 or w < 1 or big_y % h or big_x % w:
        raise InputError(
            f"shape {tuple(shape)} must divide the truth's grid {(big_y, big_x)} into whole blocks"
        )
    return truth.reshape(b, h, big_y // h, w, big_x // w).sum(axis=(2, 4))


def grid_ceiling(truth: np.ndarray, shape: tuple[int, int], interpolation: str) -> np.ndarray:
    """How far a map on a coarser grid can agree with the truth: the resolution ceiling.

    The truth is block-summed onto ``shape`` (:func:`block_sum`), brought back to the input
    grid by ``interpolation`` (:func:`explain.interpolation.upsample`, as the layer maps are)
    and compared with itself by Spearman. A map on that grid cannot rank the input cells
    better, whatever the model.

    Args:
        truth: ``(sample, Y, X)`` signed truth, e.g. ``contribution`` in ``U_e/delta``.
        shape: The coarse grid ``(h, w)``; ``Y`` and ``X`` whole multiples of ``h`` and ``w``.
        interpolation: A mode of :data:`explain.interpolation.MODES`.

    Returns:
        ``(sample,)`` Spearman rho, unitless: exactly 1 on the input grid itself, NaN where
        the truth or its coarse version is constant.
    """
    truth = _check_maps("truth", truth)
    if tuple(shape) == truth.shape[1:]:
        return np.ones(len(truth))
    coarse = torch.from_numpy(block_sum(truth, tuple(shape)))
    return _spearman(upsample(coarse, truth.shape[1:], interpolation).numpy(), truth)


def mask_size(fraction: float, cells: int) -> int:
    """``K = round(fraction * cells)``, halves rounding up, at least one cell."""
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    # the 1e-9 keeps products like 0.35 * 10 = 3.4999999999999996 on the intended side of .5
    return max(1, int(np.floor(fraction * cells + 0.5 + 1e-9)))


def truth_mask(truth: np.ndarray, fraction: float, kind: str = "abs") -> np.ndarray:
    """The ground-truth mask: the top ``fraction`` of cells per sample.

    Args:
        truth: ``(sample, Y, X)`` signed truth.
        fraction: Share of the ``N = Y * X`` cells to keep, in ``(0, 1]``; the mask has
            ``K = round(fraction * N)`` cells (halves round up, at least 1).
        kind: ``"abs"`` ranks cells by ``|truth|`` (always exactly ``K`` cells, cells with zero
            truth included if fewer than ``K`` are non-zero); ``"positive"`` ranks by ``truth`` and
            only cells with ``truth > 0`` are eligible, so a sample with fewer than ``K`` positive
            cells gets all of them (and an empty mask if it has none).

    Returns:
        Boolean ``(sample, Y, X)``. Ties at the threshold go to the lower row-major cell index.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    truth = _check_maps("truth", truth)
    flat = truth.reshape(len(truth), truth.shape[1] * truth.shape[2])
    k = mask_size(fraction, flat.shape[1])
    score = np.abs(flat) if kind == "abs" else np.where(flat > 0, flat, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    mask = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :k], True, axis=1)
    if kind == "positive":
        mask &= flat > 0
    return mask.reshape(truth.shape)


def relevance_mass_accuracy(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of the map's positive mass that lies inside the mask.

    ``sum(max(map, 0) in mask) / sum(max(map, 0))``; negative map values count as zero (Quantus
    sums the raw values instead, which equals this for non-negative maps).

    Returns:
        ``(sample,)`` in ``[0, 1]``; NaN where the map has no positive mass.
    """
    a, g = _flat(maps, mask)
    pos = np.maximum(a, 0.0)
    total = pos.sum(axis=1)
    inside = np.where(g, pos, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def relevance_rank_accuracy(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``|top-K(map) ∩ mask| / K`` with ``K = |mask|`` per sample.

    Cells tied with the K-th largest value share the remaining places evenly (the expected hit
    count under random tie-breaking), so a constant map scores the chance level ``K / N``. Without
    ties this is Quantus' RelevanceRankAccuracy.

    Returns:
        ``(sample,)`` in ``[0, 1]``; NaN where the mask is empty.
    """
    a, g = _flat(maps, mask)
    k = g.sum(axis=1)
    desc = -np.sort(-a, axis=1)
    kth = np.take_along_axis(desc, np.maximum(k - 1, 0)[:, None], axis=1)
    above, at = a > kth, a == kth
    hits = (above & g).sum(axis=1) + (k - above.sum(axis=1)) * (at & g).sum(axis=1) / at.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, hits / k, np.nan)


def pointing_game(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Whether the map's maximum lies inside the mask.

    When several cells share the maximum, it is a hit only if all of them are inside the mask, so
    a constant (e.g. all-zero) map does not score unless the mask covers the whole grid. Quantus
    counts a hit if any maximal cell is inside; the two agree whenever the maximum is unique.

    Returns:
        ``(sample,)`` bool; False where the mask is empty.
    """
    a, g = _flat(maps, mask)
    is_max = a == a.max(axis=1, keepdims=True)
    return ~(is_max & ~g).any(axis=1) & g.any(axis=1)


def iou_sweep(
    maps: np.ndarray, mask: np.ndarray, taus: Sequence[float] | np.ndarray = DEFAULT_TAUS
) -> np.ndarray:
    """IoU of ``{map >= tau * max(map)}`` with the mask, for each ``tau``.

    The maximum is taken over each sample's map; where it is ``<= 0`` the thresholded set is
    empty (nothing is attributed), so the IoU is 0.

    Returns:
        ``(sample, len(taus))`` in ``[0, 1]``; NaN only where both the set and the mask are empty.
    """
    a, g = _flat(maps, mask)
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    top = a.max(axis=1, keepdims=True)
    out = np.empty((len(a), len(taus)))
    for i, tau in enumerate(taus):  # a loop over taus keeps memory at (sample, cells)
        chosen = (a >= tau * top) & (top > 0)
        inter = (chosen & g).sum(axis=1)
        union = (chosen | g).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, i] = np.where(union > 0, inter / union, np.nan)
    return out


@dataclass
class GroundTruthScores:
    """Per-sample ground-truth scores of one method; arrays run over the kept samples.

    Attributes:
        kept: ``(n,)`` indices of the kept samples in the input batch.
        excluded: Number of samples left out for ``peak_margin < min_margin`` (or NaN margin).
        spearman_input: ``(n,)`` rho at input resolution; NaN for a constant map or truth.
        spearman_native: ``(n,)`` rho at the layer's resolution, or None without native maps.
        rma, rra: ``{fraction: (n,)}``, NaN where undefined (no positive mass / empty mask).
        pointing: ``{fraction: (n,)}`` 1.0 hit, 0.0 miss, NaN where the mask is empty.
        iou_fraction: The mask fraction the IoU sweep uses (the middle one).
        taus: ``(T,)`` thresholds, as shares of each map's maximum.
        iou: ``(n, T)``; iou_mean: ``(n,)`` its mean over the taus.
    """

    kept: np.ndarray
    excluded: int
    spearman_input: np.ndarray
    spearman_native: np.ndarray | None
    rma: dict[float, np.ndarray]
    rra: dict[float, np.ndarray]
    pointing: dict[float, np.ndarray]
    iou_fraction: float
    taus: np.ndarray
    iou: np.ndarray
    iou_mean: np.ndarray

    def summary(self) -> dict[str, float]:
        """NaN-ignoring means over the kept samples, one flat key per score."""
        out = {"spearman_input": _nanmean(self.spearman_input)}
        if self.spearman_native is not None:
            out["spearman_native"] = _nanmean(self.spearman_native)
        for name in ("rma", "rra", "pointing"):
            for frac, values in getattr(self, name).items():
                out[f"{name}@{frac:g}"] = _nanmean(values)
        out[f"iou_mean@{self.iou_fraction:g}"] = _nanmean(self.iou_mean)
        return out


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`spearman`, also for a batch with every sample left out."""
    return spearman(a, b) if len(a) else np.empty(0)


def truth_spearman(maps: np.ndarray, truth: np.ndarray, rectified: bool = False) -> np.ndarray:
    """Spearman of each map with the truth on the same grid, ``(sample,)``.

    Signed maps are compared with the signed truth; ``rectified`` maps (non-negative by
    construction) with its positive part ``max(truth, 0)``. NaN for a constant map or truth.
    """
    return _spearman(maps, np.maximum(truth, 0.0) if rectified else truth)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def kept_samples(truth: np.ndarray, peak_margin: np.ndarray, min_margin: float) -> np.ndarray:
    """Indices of the designs whose peak margin is at least ``min_margin``."""
    margin = np.asarray(peak_margin, dtype=np.float64)
    if margin.shape != (len(truth),):
        raise InputError(
            f"peak_margin must be (sample,) = ({len(truth)},), got shape {margin.shape}"
        )
    return np.flatnonzero(margin >= min_margin)  # NaN margins compare False: left out


def _native_spearman(
    maps_native: np.ndarray, truth: np.ndarray, kept: np.ndarray, rectified: bool
) -> np.ndarray:
    """Spearman of the kept native maps with the block-summed full-batch truth."""
    maps_native = _check_maps("maps_native", maps_native)
    if len(maps_native) != len(truth):
        raise InputError(
            f"maps_native must have {len(truth)} samples like the truth, got {len(maps_native)}"
        )
    blocks = block_sum(truth[kept], maps_native.shape[1:])
    return truth_spearman(maps_native[kept], blocks, rectified)


def ground_truth_scores(
    maps_input: np.ndarray,
    truth: np.ndarray,
    peak_margin: np.ndarray,
    *,
    maps_native: np.ndarray | None = None,
    rectified: bool = False,
    fractions: Sequence[float] = (0.05, 0.1, 0.2),
    kind: str = "abs",
    min_margin: float = MIN_MARGIN,
    taus: Sequence[float] | np.ndarray = DEFAULT_TAUS,
) -> GroundTruthScores:
    """Every ground-truth score of one method's maps, on the samples with a clear peak.

    Args:
        maps_input: ``(sample, Y, X)`` maps at input resolution.
        truth: ``(sample, Y, X)`` signed ``contribution`` in ``U_e/delta``.
        peak_margin: ``(sample,)``; samples below ``min_margin`` are left out.
        maps_native: Optional ``(sample, h, w)`` maps at the layer's resolution, compared by
            Spearman with ``block_sum(truth, (h, w))``.
        rectified: The maps are non-negative by construction (e.g. ReLU'd CAMs); Spearman then
            compares them with the positive part of the truth, ``max(truth, 0)`` at input
            resolution and ``max(block_sum(truth), 0)`` at the layer's. The masks are unchanged.
        fractions: Mask sizes for RMA, RRA and the pointing game; the middle one of the sorted
            fractions (index ``len // 2``) is used for the IoU sweep.
        kind: Mask ranking, ``"abs"`` or ``"positive"`` (see :func:`truth_mask`). With
            ``"abs"`` the mask holds the cells that matter most in either direction, so the
            localisation scores (RMA, RRA, pointing game, IoU) read the map's magnitude
            ``|map|``: a signed map that marks a strongly lowering cell in blue has found it.
            With ``"positive"`` they read the signed map. Spearman always uses the signed map.
        min_margin: Smallest ``peak_margin`` kept.
        taus: IoU thresholds as shares of each map's maximum.
    """
    truth = _check_maps("truth", truth)
    maps_input = _check_maps("maps_input", maps_input, truth.shape)
    if not fractions:
        raise InputError("fractions must name at least one mask fraction, got none")
    kept = kept_samples(truth, peak_margin, min_margin)
    native = None if maps_native is None else _native_spearman(maps_native, truth, kept, rectified)
    excluded = len(truth) - len(kept)
    maps, truth = maps_input[kept], truth[kept]
    signed = maps
    if kind == "abs":
        maps = np.abs(maps)
    iou_fraction = float(sorted(fractions)[len(fractions) // 2])
    masks = {frac: truth_mask(truth, frac, kind) for frac in fractions}
    hits = {frac: pointing_game(maps, mask).astype(np.float64) for frac, mask in masks.items()}
    iou = iou_sweep(maps, masks[iou_fraction], taus)
    return GroundTruthScores(
        kept=kept,
        excluded=excluded,
        spearman_input=truth_spearman(signed, truth, rectified),
        spearman_native=native,
        rma={frac: relevance_mass_accuracy(maps, mask) for frac, mask in masks.items()},
        rra={frac: relevance_rank_accuracy(maps, mask) for frac, mask in masks.items()},
        pointing={f: np.where(m.any(axis=(1, 2)), hits[f], np.nan) for f, m in masks.items()},
        iou_fraction=iou_fraction,
        taus=np.asarray(taus, dtype=np.float64).reshape(-1),
        iou=iou,
        iou_mean=iou.mean(axis=1),
    )
