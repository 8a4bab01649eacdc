"""Score every method's maps: faithfulness, ground truth, sanity checks, and a recommendation.

:func:`evaluate` runs the whole protocol of ``docs/evaluation.md`` on one model and a set of
designs and returns an :class:`Evaluation`: per-sample scores, mean curves, randomisation
results and the per-method table the recommendation rule reads. Everything runs batch by
batch on the model's device; perturbed inputs go through the model in chunks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.errors import InputError
from explain.api import Explainer, every_method
from explain.baselines import BASELINES
from explain.catalogue import METHODS
from explain.evaluation import table as keys
from explain.evaluation.faithfulness import deletion_insertion, random_reference
from explain.evaluation.groundtruth import (
    MIN_MARGIN,
    grid_ceiling,
    ground_truth_scores,
    kept_samples,
)
from explain.evaluation.layers import LayerScore, layer_sweep, sweep_methods
from explain.evaluation.road import road
from explain.evaluation.sanity import data_randomisation, model_randomisation
from explain.evaluation.similarity import spearman
from explain.evaluation.splits import Split, split_scores
from explain.evaluation.streams import design_streams, rows_of
from explain.inputs import check_model, roughness_batch
from explain.path import integrated_gradients

GT_FRACTION = 0.1  # the top-10% mask of |truth| used in the table


@dataclass
class Evaluation:
    """Scores of each method on the same designs.

    Attributes:
        methods: Method names, in table order.
        samples: Number of designs scored.
        per_sample: ``{score name: (method, sample)}`` arrays (NaN where undefined).
        curves: ``{baseline: {"deletion"|"insertion": (method, steps + 1)}}`` mean curves.
        random: ``{baseline: {"deletion_auc"|"insertion_auc": (samples,)}}`` random-order AUCs.
        cascade: Cascading model-randomisation result
            (:class:`explain.evaluation.sanity.RandomisationResult`).
        independent: Independent model-randomisation result.
        data_random: ``{method: {measure: Summary}}`` against a permuted-target model, if given.
        table: ``{method: {column: value}}``, the numbers the recommendation reads.
        settings: How the scores were obtained (steps, baselines, sample counts, seeds...).
        layers: The layer sweep with ground truth (:func:`explain.evaluation.layers.layer_sweep`),
            one row per layer and method; None when not run.
        splits: The ground-truth scores by design regime with ground truth,
            ``{"peak_margin"|"saturation": Split}`` (:mod:`explain.evaluation.splits`).
    """

    methods: list[str]
    samples: int
    per_sample: dict[str, np.ndarray]
    curves: dict[str, dict[str, np.ndarray]]
    random: dict[str, dict[str, np.ndarray]]
    cascade: object | None = None
    independent: object | None = None
    data_random: dict | None = None
    table: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    layers: list[LayerScore] | None = None
    splits: dict[str, Split] = field(default_factory=dict)


def _maps_fn(
    methods: Sequence[str], layer: str, shape: tuple[int, int], interpolation: str, **options
) -> Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]:
    """``explain_fn(model, x) -> {method: (B, Y, X)}`` on the input grid, for the sanity checks.

    The maps reach the input grid by the same ``interpolation`` as every other score. A map
    that multiplies the input (``input_multiplied``: gradient x input, integrated gradients)
    is divided by ``x - b`` (0 where ``x = b``): the factor left is what depends on the model,
    while ``x - b`` itself survives any randomisation of it (Adebayo et al. 2018).
    """

    def explain_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        explainer = Explainer(model, shape, methods, layer, (interpolation,), **options)
        _, native = explainer.maps(x)
        full = explainer.on_input_grid(native, interpolation)
        out = {m: full[:, i] for i, m in enumerate(explainer.methods)}
        for m in (m for m in out if METHODS[m].input_multiplied):
            reference = explainer.reference(x) if METHODS[m].family == "path" else None
            d = (x if reference is None else x - reference)[:, 0]
            out[m] = torch.where(d != 0, out[m] / torch.where(d != 0, d, 1), 0)
        return out

    return explain_fn


class _Scores:
    """Per-design scores ``{key: (method, sample)}``, NaN until written."""

    def __init__(self, methods: int, samples: int) -> None:
        self.shape = (methods, samples)
        self.values: dict[str, np.ndarray] = {}

    def put(self, key: str, m: int | slice, rows: slice | np.ndarray, values: object) -> None:
        if key not in self.values:
            self.values[key] = np.full(self.shape, np.nan)
        self.values[key][m, rows] = np.asarray(values, dtype=np.float64)


Exchange = Callable[[dict[str, np.ndarray]], "list[dict[str, np.ndarray]] | None"]
CurveSums = dict[str, dict[str, np.ndarray]]  # {baseline: {"deletion"|"insertion"|"count": ...}}
_SEP = "|"  # joins the parts of a flat array name


def _curve_sums(baselines: Sequence[str], methods: int, steps: int) -> CurveSums:
    zeros = np.zeros((methods, steps + 1))
    return {
        b: {"deletion": zeros.copy(), "insertion": zeros.copy(), "count": np.zeros(methods)}
        for b in baselines
    }


@dataclass
class _Part:
    """What one process scored: the designs ``rows``, their scores, and per batch (keyed by
    its first design) the sums of its deletion/insertion curves and its random-order AUCs."""

    rows: np.ndarray
    scores: _Scores
    curves: dict[int, CurveSums]
    random: dict[int, dict[str, dict[str, np.ndarray]]]

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` (no objects: safe to save and load without pickle)."""
        out: dict[str, np.ndarray] = {"rows": self.rows}
        for key, values in self.scores.values.items():
            out[_SEP.join(("score", key))] = values[:, self.rows]
        for name, tree in (("curve", self.curves), ("random", self.random)):
            for start, by_baseline in tree.items():
                for b, kinds in by_baseline.items():
                    for kind, values in kinds.items():
                        out[_SEP.join((name, str(start), b, kind))] = values
        return out

    def mean_curves(self, baselines: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """Mean curves over the designs not flagged ``small_change``, batches in order."""
        out = {}
        for b in baselines:
            total: dict[str, np.ndarray] = {}
            for start in sorted(self.curves):
                batch = self.curves[start][b]
                total = {k: total[k] + batch[k] for k in total} if total else dict(batch)
            count = np.maximum(total["count"], 1)[:, None]
            out[b] = {k: total[k] / count for k in ("deletion", "insertion")}
        return out

    def random_aucs(self) -> dict[str, dict[str, np.ndarray]]:
        """Random-order AUCs ``{baseline: {kind: (k,)}}``, batches in order."""
        starts = sorted(self.random)
        return {
            b: {kind: np.concatenate([self.random[a][b][kind] for a in starts]) for kind in kinds}
            for b, kinds in self.random[starts[0]].items()
        }


def merge_parts(parts: Sequence[dict[str, np.ndarray]], methods: int, n: int) -> _Part:
    """One :class:`_Part` of all ``n`` designs from every process's :meth:`_Part.arrays`."""
    merged = _Part(np.arange(n), _Scores(methods, n), {}, {})
    seen = np.zeros(n, dtype=int)
    for arrays in parts:
        rows = np.asarray(arrays["rows"], dtype=int)
        seen[rows] += 1
        for name, values in arrays.items():
            kind, *rest = name.split(_SEP)
            if kind == "score":
                merged.scores.put(rest[0], slice(None), rows, values)
            elif kind in ("curve", "random"):
                start, b, key = rest
                tree = merged.curves if kind == "curve" else merged.random
                tree.setdefault(int(start), {}).setdefault(b, {})[key] = values
    if not (seen == 1).all():
        twice = np.flatnonzero(seen != 1)
        raise InputError(f"the parts cover {len(twice)} design(s) not exactly once: {twice[:5]}")
    return merged


@dataclass
class _Setup:
    """What every batch of :func:`evaluate` shares."""

    model: nn.Module
    explainer: Explainer
    interpolation: str
    baselines: Sequence[str]
    steps: int
    road_percentages: tuple[float, ...]
    target_std: float | None
    chunk: int
    streams: list[torch.Generator]  # one per design (explain.evaluation.streams)

    def generators(self, rows: slice) -> list[torch.Generator]:
        """The random streams of the designs ``rows``."""
        return rows_of(self.streams, range(rows.start, rows.stop))


def _faithfulness(
    s: _Setup,
    x: torch.Tensor,
    maps: torch.Tensor,
    m: int,
    rows: slice,
    out: _Scores,
    curves: CurveSums,
    solutions: dict[bytes, np.ndarray],
) -> None:
    """Deletion/insertion on every baseline and ROAD of one method's maps ``(B, Y, X)``.

    ``solutions`` is the batch's store of ROAD's imputation solves, shared by its methods.
    """
    for b in s.baselines:
        c = deletion_insertion(
            s.model, x, maps, BASELINES[b](x), steps=s.steps, chunk=s.chunk,
            generator=s.generators(rows), target_std=s.target_std,
        )  # fmt: skip
        out.put(keys.deletion_auc(b), m, rows, c.deletion_auc.cpu())
        out.put(keys.insertion_auc(b), m, rows, c.insertion_auc.cpu())
        out.put(keys.small_change(b), m, rows, c.small_change.cpu())
        ok = ~c.small_change.cpu().numpy()
        curves[b]["deletion"][m] += c.deletion.cpu().numpy()[ok].sum(0)
        curves[b]["insertion"][m] += c.insertion.cpu().numpy()[ok].sum(0)
        curves[b]["count"][m] += ok.sum()
    r = road(
        s.model, x, maps, percentages=s.road_percentages, chunk=s.chunk,
        generator=s.generators(rows), scale=s.target_std, solutions=solutions,
    )  # fmt: skip
    out.put(keys.ROAD_MORF, m, rows, r.morf_mean.cpu())
    out.put(keys.ROAD_LERF, m, rows, r.lerf_mean.cpu())
    out.put(keys.ROAD_COMBINED, m, rows, r.combined.cpu())


def _ground_truth(
    method: str, maps: np.ndarray, native: np.ndarray | None, truth, margin, m, rows, out
) -> None:
    """Agreement of one method's maps with the exact contribution of a synthetic campaign."""
    gt = ground_truth_scores(
        maps, truth, margin, maps_native=native, rectified=METHODS[method].rectified,
        fractions=(GT_FRACTION,),
    )  # fmt: skip
    idx = np.arange(rows.start, rows.stop)[gt.kept]
    out.put(keys.GT_SPEARMAN_INPUT, m, idx, gt.spearman_input)
    if gt.spearman_native is not None:
        out.put(keys.GT_SPEARMAN_NATIVE, m, idx, gt.spearman_native)
    out.put(keys.GT_RMA, m, idx, gt.rma[GT_FRACTION])
    out.put(keys.GT_RRA, m, idx, gt.rra[GT_FRACTION])
    out.put(keys.GT_POINTING, m, idx, gt.pointing[GT_FRACTION])
    out.put(keys.GT_IOU, m, idx, gt.iou_mean)


def _error_budget(
    s: _Setup, x: torch.Tensor, maps: torch.Tensor, truth: np.ndarray, kept, rows, out
) -> None:
    """Why each method's maps miss the truth: model, learning, grid (``table.EB_*``)."""
    _, ig, _ = integrated_gradients(s.model, x, chunk=s.chunk)
    ig = ig.cpu().numpy().astype(np.float64)
    idx = np.arange(rows.start, rows.stop)[kept]
    ig_truth = spearman(ig[kept], truth[kept])
    for m, method in enumerate(s.explainer.methods):
        out.put(keys.EB_MODEL_IG, m, idx, spearman(maps[:, m].cpu().numpy()[kept], ig[kept]))
        out.put(keys.EB_IG_TRUTH, m, idx, ig_truth)
        out.put(keys.EB_CEILING, m, idx, _ceiling(s, method, truth[kept]))


def _ceiling(s: _Setup, method: str, truth: np.ndarray) -> np.ndarray:
    """Spearman with the truth of the truth itself at the method's grid, brought back."""
    grid = {"layer": s.explainer.layer_shape, "input": s.explainer.shape}
    shape = grid.get(METHODS[method].resolution, getattr(s.explainer, "pyramid_shape", None))
    return grid_ceiling(truth, tuple(shape or s.explainer.shape), s.interpolation)


def _random_reference(
    s: _Setup,
    x_all: torch.Tensor,
    starts: Sequence[int],
    k: int,
    batch_size: int,
    permutations: int,
) -> dict[int, dict[str, dict[str, np.ndarray]]]:
    """Random-order AUCs of the batches ``starts`` among the first ``k`` designs,
    ``{start: {baseline: {"deletion_auc"|"insertion_auc": (batch,)}}}``."""
    random: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for start in (start for start in starts if start < k):
        rows = slice(start, min(start + batch_size, k))
        x = x_all[rows].to(s.explainer.device)
        random[start] = {}
        for b in s.baselines:
            ref = random_reference(
                s.model, x, BASELINES[b](x), steps=s.steps, permutations=permutations,
                chunk=s.chunk, generator=s.generators(rows),
            )  # fmt: skip
            random[start][b] = {
                "deletion_auc": ref.deletion_auc_mean.cpu().numpy(),
                "insertion_auc": ref.insertion_auc_mean.cpu().numpy(),
            }
    return random


def evaluate(
    model: nn.Module,
    roughness: np.ndarray,
    methods: Sequence[str] | None = None,
    *,
    truth: np.ndarray | None = None,
    peak_margin: np.ndarray | None = None,
    saturation: np.ndarray | None = None,
    target_std: float | None = None,
    layer: str | None = None,
    interpolation: str = "bilinear",
    steps: int = 100,
    baselines: Sequence[str] = ("smooth-wall", "blurred"),
    random_permutations: int = 10,
    random_samples: int | None = None,
    road_percentages: Sequence[float] = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2)),
    sanity_samples: int = 16,
    randomised_model: nn.Module | None = None,
    layer_sweep_methods: Sequence[str] = (),
    batch_size: int = 50,
    chunk: int = 1024,
    seed: int = 0,
    design_keys: Sequence[int] | np.ndarray | None = None,
    shard: tuple[int, int] = (0, 1),
    exchange: Exchange | None = None,
    progress: bool = True,
) -> Evaluation | None:
    """Score ``methods`` on the designs ``roughness`` ``(sample, y, x)``.

    Args:
        model: The surrogate (any module mapping ``(B, 1, y, x)`` to ``(B,)``).
        roughness: Designs in delta.
        methods: Method names (see :mod:`explain.catalogue`); default every method that
            applies to the model (:func:`explain.api.every_method`).
        truth, peak_margin: Ground-truth contribution ``(sample, y, x)`` and peak margins of a
            synthetic campaign; without them the ground-truth scores are skipped.
        saturation: ``(sample,)`` ``|w(p*)| / omega_s`` of each design (unitless, see
            ``data.simulator.saturation_ratio``), to split the ground-truth scores by
            saturation regime; the split by peak margin needs only ``peak_margin``.
        target_std: Standard deviation of the target, to flag designs whose output barely
            changes between input and baseline (``|f(x) - f(b)| < 0.1 sigma``).
        layer: Layer of the layer methods; default the model's last spatial layer.
        interpolation: How layer maps reach the input grid, for every score (sanity included).
        steps: Deletion/insertion steps (``steps + 1`` points per curve).
        baselines: Names from :data:`explain.baselines.BASELINES`.
        random_permutations: Random orders per design for the reference AUC.
        random_samples: Designs (the first ones) used for the random reference; default all.
        road_percentages: Fractions of cells ROAD removes.
        sanity_samples: Designs (the first ones) used for the randomisation checks.
        randomised_model: A model trained on permuted targets, for data randomisation.
        layer_sweep_methods: One-pass layer methods to score against the truth at every
            feature layer on the input grid (:func:`~explain.evaluation.layers.layer_sweep`);
            none by default. Needs ``truth``.
        batch_size: Designs per batch.
        chunk: Perturbed inputs per forward pass.
        seed: Seed of every random step (tie-breaking, random orders, ROAD noise, re-inits).
        design_keys: Each design's key for its random stream, e.g. its position in the campaign
            (default ``0..n-1``): a design's scores depend on ``seed`` and its key only, not
            on the other designs, the batch size or the number of processes.
        shard: ``(rank, processes)``: this process scores the batches ``rank``,
            ``rank + processes``, ... of ``batch_size`` designs (the batches a single process
            would form, so the numbers are the same bit for bit).
        exchange: With several processes, sends this process's part (flat arrays, see
            :func:`merge_parts`) and returns every process's part on rank 0, None elsewhere
            (e.g. through files; :mod:`train.distributed`). Rank 0 then runs the checks on
            the first designs and returns the :class:`Evaluation`; the others return None.
        progress: Show progress bars.
    """
    x_all = roughness_batch(np.asarray(roughness), channel_optional=True).to(torch.float32)
    n, shape = len(x_all), tuple(x_all.shape[-2:])
    check_model(model, shape)
    if design_keys is not None and len(design_keys) != n:
        raise InputError(f"design_keys: one per design expected ({n}), got {len(design_keys)}")
    if methods is None:
        methods = every_method(model, shape, layer)
    explainer = Explainer(model, shape, methods, layer, (interpolation,), chunk=chunk)
    methods = explainer.methods
    sweep = sweep_methods(layer_sweep_methods) if layer_sweep_methods and truth is not None else []
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise InputError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    streams = design_streams(seed, np.arange(n) if design_keys is None else design_keys)
    s = _Setup(
        model, explainer, interpolation, list(baselines), steps, tuple(road_percentages),
        target_std, chunk, streams,
    )  # fmt: skip
    rank, processes = shard
    if processes > 1 and exchange is None:
        raise InputError(f"shard {shard}: several processes need an exchange of their parts")
    mine = list(range(0, n, batch_size))[rank::processes]
    rows_mine = [np.arange(a, min(a + batch_size, n)) for a in mine]
    part = _Part(np.concatenate(rows_mine or [np.zeros(0, int)]), _Scores(len(methods), n), {}, {})
    # counted in design-method pairs and advanced per method, so a batch of many methods
    # shows its progress instead of sitting at 0/1
    bar = tqdm(
        total=sum(min(batch_size, n - a) for a in mine) * len(methods),
        desc=f"scoring {len(methods)} methods", unit="map", disable=not progress,
    )  # fmt: skip
    for start in mine:
        rows = slice(start, min(start + batch_size, n))
        x = x_all[rows].to(explainer.device)
        _, native = explainer.maps(x)
        maps = explainer.on_input_grid(native, interpolation)
        part.curves[start] = curves = _curve_sums(baselines, len(methods), steps)
        solutions: dict[bytes, np.ndarray] = {}  # ROAD's solves, shared by the batch's methods
        for m, method in enumerate(methods):
            _faithfulness(s, x, maps[:, m], m, rows, part.scores, curves, solutions)
            if truth is not None:
                at_layer = METHODS[method].resolution == "layer"
                _ground_truth(
                    method, maps[:, m].cpu().numpy(),
                    native[method].cpu().numpy() if at_layer else None,
                    np.asarray(truth[rows]), np.asarray(peak_margin[rows]), m, rows, part.scores,
                )  # fmt: skip
            bar.update(len(x))
        if truth is not None:
            kept = kept_samples(np.asarray(truth[rows]), np.asarray(peak_margin[rows]), MIN_MARGIN)
            _error_budget(s, x, maps, np.asarray(truth[rows], np.float64), kept, rows, part.scores)
    bar.close()
    k = min(n, random_samples or n)
    part.random = _random_reference(s, x_all, mine, k, batch_size, random_permutations)
    if processes > 1:
        parts = exchange(part.arrays())
        if parts is None:
            return None
        part = merge_parts(parts, len(methods), n)
    out, mean_curves, random = part.scores, part.mean_curves(baselines), part.random_aucs()
    result = Evaluation(methods, n, out.values, mean_curves, random)
    sanity = min(n, sanity_samples)
    if sanity:
        _sanity(result, s, x_all[:sanity], randomised_model, seed, progress)
    if truth is not None:
        result.splits = _splits(result, peak_margin, saturation)
        if sweep:
            result.layers = layer_sweep(
                model, roughness, truth, peak_margin, sweep,
                interpolation=interpolation, batch_size=batch_size, chunk=chunk,
                progress=progress,
            )  # fmt: skip
    result.settings = {
        "samples": n,
        "layer": explainer.layer,
        "interpolation": interpolation,
        "steps": steps,
        "baselines": list(baselines),
        "random_permutations": random_permutations,
        "random_samples": k,
        "road_percentages": [float(p) for p in road_percentages],
        "sanity_samples": sanity,
        "seed": seed,
        "target_std": target_std,
        "ground_truth": truth is not None,
        "data_randomisation": randomised_model is not None,
        "saturation_split": truth is not None and saturation is not None,
        "layer_sweep": sweep,
        "cascade_scale_only": list(result.cascade.scale_only) if result.cascade else [],
    }
    result.table = keys.summarise(result)
    return result


def _splits(
    result: Evaluation, peak_margin: np.ndarray, saturation: np.ndarray | None
) -> dict[str, Split]:
    """The ground-truth scores by peak margin and, given the ratios, by saturation regime."""
    arrays = {"saturation": saturation, "peak_margin": peak_margin}
    return {
        name: split_scores(result.per_sample, result.methods, name, values, peak_margin)
        for name, values in arrays.items()
        if values is not None
    }


def _sanity(
    result: Evaluation,
    s: _Setup,
    x: torch.Tensor,
    randomised_model: nn.Module | None,
    seed: int,
    progress: bool,
) -> None:
    """Model randomisation (cascading, independent) and, given a model, data randomisation."""
    x = x.to(s.explainer.device)
    explain_fn = _maps_fn(
        result.methods, s.explainer.layer, s.explainer.shape, s.interpolation, chunk=s.chunk
    )
    if progress:
        print(f"model randomisation on {len(x)} designs (cascading, then independent)")
    result.cascade = model_randomisation(s.model, x, explain_fn, mode="cascading", seed=seed)
    result.independent = model_randomisation(s.model, x, explain_fn, mode="independent", seed=seed)
    if randomised_model is not None:
        other = copy.deepcopy(randomised_model).to(s.explainer.device)
        result.data_random = data_randomisation(explain_fn(s.model, x), explain_fn(other, x))
