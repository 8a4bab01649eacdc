"""The agreement with the truth split by the designs' regime: saturation and peak margin.

A mean over all designs can hide where a method fails. :func:`split_scores` takes the
per-design scores of :func:`~explain.evaluation.protocol.evaluate` and a plain array saying
where each design sits, and averages each method's ground-truth scores (``gt_spearman_input``
and the error budget, :data:`table.SPLIT_SCORES`) within each bin, with the number of designs.
Designs with ``peak_margin`` below ``MIN_MARGIN`` are left out, as from every ground-truth score.

Two splits are defined:

- **saturation**: ``|w(p*)| / omega_s``, the peak vorticity before saturation over the saturation
  level (``data.physics.saturation_ratio`` recovers it from ``max_vorticity``): below 0.5 the
  target is nearly linear in the heights, from 1 on ``tanh`` has flattened it;
- **peak margin**: how clearly the peak stands out from its best rival (5-10%, 10-25%, >= 25%).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from data.errors import InputError
from explain.evaluation import table as keys
from explain.evaluation.groundtruth import MIN_MARGIN, kept_samples


@dataclass(frozen=True)
class Bin:
    """A half-open interval ``low <= value < high`` of a design property, with its name."""

    name: str
    low: float
    high: float


SATURATION_BINS = (
    Bin("linear", 0.0, 0.5),
    Bin("transitional", 0.5, 1.0),
    Bin("saturated", 1.0, np.inf),
)
MARGIN_BINS = (
    Bin("5–10%", MIN_MARGIN, 0.10),
    Bin("10–25%", 0.10, 0.25),
    Bin("≥ 25%", 0.25, np.inf),
)
SPLITS = {"saturation": SATURATION_BINS, "peak_margin": MARGIN_BINS}


def bin_index(values: np.ndarray, bins: Sequence[Bin]) -> np.ndarray:
    """The bin of each value, ``(sample,)`` int: an index into ``bins``, -1 outside them all.

    NaN lies outside every bin. Where bins overlap, the first one wins.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise InputError(f"values must be (sample,), got shape {values.shape}")
    out = np.full(values.shape, -1)
    for i, b in reversed(list(enumerate(bins))):
        out[(values >= b.low) & (values < b.high)] = i
    return out


@dataclass
class Split:
    """Ground-truth scores of each method within each bin of one design property.

    Attributes:
        name: The property (``"saturation"``, ``"peak_margin"``).
        bins: The bins, in order.
        scores: The score keys split (those of :data:`table.SPLIT_SCORES` evaluated).
        designs: ``{bin name: designs}`` in the bin with ``peak_margin >= MIN_MARGIN``.
        table: ``{method: {bin name: {score key: mean over the bin's designs}}}``; NaN where
            no design of the bin has the score.
    """

    name: str
    bins: tuple[Bin, ...]
    scores: tuple[str, ...]
    designs: dict[str, int]
    table: dict[str, dict[str, dict[str, float]]]

    def as_dict(self) -> dict[str, object]:
        """Plain types for ``summary.json``; a bin's upper bound ``inf`` becomes None."""
        return {
            "bins": [
                {"name": b.name, "low": b.low, "high": b.high if np.isfinite(b.high) else None}
                for b in self.bins
            ],
            "scores": list(self.scores),
            "designs": self.designs,
            "table": self.table,
        }


def split_scores(
    per_sample: Mapping[str, np.ndarray],
    methods: Sequence[str],
    name: str,
    values: np.ndarray,
    peak_margin: np.ndarray,
    bins: Sequence[Bin] | None = None,
) -> Split:
    """Each method's mean ground-truth scores per bin of ``values``.

    Args:
        per_sample: ``{score key: (method, sample)}`` (``Evaluation.per_sample``); the keys of
            :data:`table.SPLIT_SCORES` it holds are split.
        methods: Method names, in the order of the ``method`` axis.
        name: The property, a key of :data:`SPLITS` unless ``bins`` are given.
        values: ``(sample,)`` the property per design: ``|w(p*)| / omega_s`` (unitless) for
            ``"saturation"``, the relative ``peak_margin`` for ``"peak_margin"``.
        peak_margin: ``(sample,)``; designs below ``MIN_MARGIN`` are left out.
        bins: The bins; default ``SPLITS[name]``.
    """
    if bins is None:
        if name not in SPLITS:
            raise InputError(f"split {name!r} has no default bins; choose from {list(SPLITS)}")
        bins = SPLITS[name]
    index = bin_index(values, bins)
    kept = np.zeros(len(index), dtype=bool)
    kept[kept_samples(index, peak_margin, MIN_MARGIN)] = True
    members = {b.name: kept & (index == i) for i, b in enumerate(bins)}
    scores = tuple(k for k in keys.SPLIT_SCORES if k in per_sample)
    table = {
        method: {
            b: {k: keys.finite_mean(per_sample[k][m][inside]) for k in scores}
            for b, inside in members.items()
        }
        for m, method in enumerate(methods)
    }
    designs = {b: int(inside.sum()) for b, inside in members.items()}
    return Split(name, tuple(bins), scores, designs, table)
