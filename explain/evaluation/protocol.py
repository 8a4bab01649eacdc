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

from explain.api import Explainer
from explain.catalogue import METHODS
from explain.evaluation import faithfulness as fa
from explain.evaluation.groundtruth import ground_truth_scores
from explain.evaluation.sanity import MEASURES, data_randomisation, model_randomisation, passes

BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "smooth-wall": fa.smooth_wall,
    "blurred": fa.blurred,
}
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


def _maps_fn(methods: Sequence[str], layer: str, shape: tuple[int, int], **options):
    """``explain_fn(model, x) -> {method: (B, Y, X)}`` on the input grid, for the sanity checks."""

    def explain_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        explainer = Explainer(model, shape, methods, layer, ("bilinear",), **options)
        ds = explainer.batch(x)
        maps = torch.from_numpy(ds["attribution"].values[:, :, 0])
        return {m: maps[:, i] for i, m in enumerate(explainer.methods)}

    return explain_fn


def evaluate(
    model: nn.Module,
    roughness: np.ndarray,
    methods: Sequence[str],
    *,
    truth: np.ndarray | None = None,
    peak_margin: np.ndarray | None = None,
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
    batch_size: int = 50,
    chunk: int = 1024,
    seed: int = 0,
    progress: bool = True,
) -> Evaluation:
    """Score ``methods`` on the designs ``roughness`` ``(sample, y, x)``.

    Args:
        model: The surrogate (any module mapping ``(B, 1, y, x)`` to ``(B,)``).
        roughness: Designs in delta.
        methods: Method names (see :mod:`explain.catalogue`).
        truth, peak_margin: Ground-truth contribution ``(sample, y, x)`` and peak margins of a
            synthetic campaign; without them the ground-truth scores are skipped.
        target_std: Standard deviation of the target, to flag designs whose output barely
            changes between input and baseline (``|f(x) - f(b)| < 0.1 sigma``).
        layer: Layer of the layer methods; default the model's last spatial layer.
        interpolation: How layer maps reach the input grid for the perturbation scores.
        steps: Deletion/insertion steps (``steps + 1`` points per curve).
        baselines: Names from :data:`BASELINES`.
        random_permutations: Random orders per design for the reference AUC.
        random_samples: Designs (the first ones) used for the random reference; default all.
        road_percentages: Fractions of cells ROAD removes.
        sanity_samples: Designs (the first ones) used for the randomisation checks.
        randomised_model: A model trained on permuted targets, for data randomisation.
        batch_size: Designs per batch.
        chunk: Perturbed inputs per forward pass.
        seed: Seed of every random step (tie-breaking, random orders, ROAD noise, re-inits).
        progress: Show progress bars.
    """
    x_all = torch.as_tensor(np.asarray(roughness), dtype=torch.float32)[:, None]
    n, shape = len(x_all), tuple(x_all.shape[-2:])
    explainer = Explainer(model, shape, methods, layer, (interpolation,), chunk=chunk)
    methods = explainer.methods
    device = explainer.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    per: dict[str, np.ndarray] = {}

    def put(name: str, m: int, rows: slice, values) -> None:
        if name not in per:
            per[name] = np.full((len(methods), n), np.nan)
        per[name][m, rows] = np.asarray(values, dtype=np.float64)

    zeros = np.zeros((len(methods), steps + 1))
    curve_sums = {b: {"deletion": zeros.copy(), "insertion": zeros.copy()} for b in baselines}
    curve_counts = {b: np.zeros(len(methods)) for b in baselines}
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="scoring", unit="batch", disable=not progress):
        rows = slice(start, min(start + batch_size, n))
        x = x_all[rows].to(device)
        ds = explainer.batch(x)
        maps = torch.from_numpy(ds["attribution"].values[:, :, 0]).to(device)
        native = ds["attribution_native"] if "attribution_native" in ds else None
        base = {b: BASELINES[b](x) for b in baselines}
        for m, method in enumerate(methods):
            for b in baselines:
                c = fa.deletion_insertion(
                    model, x, maps[:, m], base[b], steps=steps, chunk=chunk,
                    generator=generator, target_std=target_std,
                )  # fmt: skip
                put(f"deletion_auc/{b}", m, rows, c.deletion_auc.cpu())
                put(f"insertion_auc/{b}", m, rows, c.insertion_auc.cpu())
                put(f"small_change/{b}", m, rows, c.small_change.cpu())
                ok = ~c.small_change.cpu().numpy()
                curve_sums[b]["deletion"][m] += c.deletion.cpu().numpy()[ok].sum(0)
                curve_sums[b]["insertion"][m] += c.insertion.cpu().numpy()[ok].sum(0)
                curve_counts[b][m] += ok.sum()
            r = fa.road(
                model, x, maps[:, m], percentages=tuple(road_percentages), chunk=chunk,
                generator=generator, scale=target_std,
            )  # fmt: skip
            put("road_morf", m, rows, r.morf_mean.cpu())
            put("road_lerf", m, rows, r.lerf_mean.cpu())
            put("road_combined", m, rows, r.combined.cpu())
            if truth is not None:
                native_maps = None
                if native is not None and method in native["layer_method"].values:
                    native_maps = native.sel(layer_method=method).values
                gt = ground_truth_scores(
                    maps[:, m].cpu().numpy(), np.asarray(truth[rows]),
                    np.asarray(peak_margin[rows]), maps_native=native_maps,
                    rectified=METHODS[method].rectified, fractions=(GT_FRACTION,),
                )  # fmt: skip
                idx = np.arange(n)[rows][gt.kept]
                put("gt_spearman_input", m, idx, gt.spearman_input)
                if gt.spearman_native is not None:
                    put("gt_spearman_native", m, idx, gt.spearman_native)
                put("gt_rma", m, idx, gt.rma[GT_FRACTION])
                put("gt_rra", m, idx, gt.rra[GT_FRACTION])
                put("gt_pointing", m, idx, gt.pointing[GT_FRACTION])
                put("gt_iou", m, idx, gt.iou_mean)
    curves = {
        b: {k: v / np.maximum(curve_counts[b], 1)[:, None] for k, v in sums.items()}
        for b, sums in curve_sums.items()
    }

    k = min(n, random_samples or n)
    random: dict[str, dict[str, np.ndarray]] = {}
    for b in baselines:
        parts = {"deletion_auc": [], "insertion_auc": []}
        for start in range(0, k, batch_size):
            x = x_all[start : min(start + batch_size, k)].to(device)
            ref = fa.random_reference(
                model, x, BASELINES[b](x), steps=steps, permutations=random_permutations,
                chunk=chunk, generator=generator,
            )  # fmt: skip
            parts["deletion_auc"].append(ref.deletion_auc_mean.cpu().numpy())
            parts["insertion_auc"].append(ref.insertion_auc_mean.cpu().numpy())
        random[b] = {key: np.concatenate(v) for key, v in parts.items()}

    result = Evaluation(methods, n, per, curves, random)
    s = min(n, sanity_samples)
    if s:
        x = x_all[:s].to(device)
        explain_fn = _maps_fn(methods, explainer.layer, shape, chunk=chunk)
        if progress:
            print(f"model randomisation on {s} designs (cascading, then independent)")
        result.cascade = model_randomisation(model, x, explain_fn, mode="cascading", seed=seed)
        result.independent = model_randomisation(
            model, x, explain_fn, mode="independent", seed=seed
        )
        if randomised_model is not None:
            other = copy.deepcopy(randomised_model).to(device)
            result.data_random = data_randomisation(explain_fn(model, x), explain_fn(other, x))
    result.settings = {
        "samples": n,
        "layer": explainer.layer,
        "interpolation": interpolation,
        "steps": steps,
        "baselines": list(baselines),
        "random_permutations": random_permutations,
        "random_samples": k,
        "road_percentages": [float(p) for p in road_percentages],
        "sanity_samples": s,
        "seed": seed,
        "target_std": target_std,
        "ground_truth": truth is not None,
        "data_randomisation": randomised_model is not None,
    }
    result.table = summarise(result)
    return result


def _mean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _sem(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def summarise(ev: Evaluation) -> dict[str, dict[str, float]]:
    """Per-method means (and standard errors) of every score, and each sanity verdict."""
    table: dict[str, dict[str, float]] = {}
    for m, method in enumerate(ev.methods):
        row: dict[str, float] = {}
        for b in ev.settings["baselines"]:
            flagged = ev.per_sample[f"small_change/{b}"][m] > 0
            dele = np.where(flagged, np.nan, ev.per_sample[f"deletion_auc/{b}"][m])
            ins = np.where(flagged, np.nan, ev.per_sample[f"insertion_auc/{b}"][m])
            row[f"deletion/{b}"], row[f"insertion/{b}"] = _mean(dele), _mean(ins)
            row[f"ins-del/{b}"], row[f"ins-del_sem/{b}"] = _mean(ins - dele), _sem(ins - dele)
            rnd = ev.random[b]
            row[f"random_ins-del/{b}"] = _mean(rnd["insertion_auc"] - rnd["deletion_auc"])
            row[f"flagged/{b}"] = float(flagged.sum())
        for name in ("road_morf", "road_lerf", "road_combined"):
            row[name] = _mean(ev.per_sample[name][m])
        row["road_combined_sem"] = _sem(ev.per_sample["road_combined"][m])
        for name in ("gt_spearman_input", "gt_spearman_native", "gt_rma", "gt_rra"):
            if name in ev.per_sample:
                row[name] = _mean(ev.per_sample[name][m])
        for name in ("gt_pointing", "gt_iou"):
            if name in ev.per_sample:
                row[name] = _mean(ev.per_sample[name][m])
        if "gt_spearman_input" in ev.per_sample:
            row["gt_sem"] = _sem(ev.per_sample["gt_spearman_input"][m])
            row["gt_excluded"] = float(np.isnan(ev.per_sample["gt_spearman_input"][m]).sum())
        if ev.cascade is not None:
            final, over = ev.cascade.final()[method], ev.cascade.over_steps()[method]
            for measure in MEASURES:
                row[f"cascade_{measure}"] = over[measure].mean
                row[f"final_{measure}"] = final[measure].mean
            row["cascade_pass"] = float(passes(over))
            worst = _least_sensitive(ev.independent, method)
            row["independent_max_spearman_abs"] = worst
        if ev.data_random is not None:
            for measure in MEASURES:
                row[f"data_{measure}"] = ev.data_random[method][measure].mean
            row["data_pass"] = float(passes(ev.data_random[method]))
        row["recommended_by_design"] = float(METHODS[method].recommended)
        table[method] = row
    return table


def _least_sensitive(independent, method: str) -> float:
    """Largest mean Spearman of |maps| over the independent re-initialisations."""
    if independent is None:
        return float("nan")
    values = independent.values[method]["spearman_abs"][1:]
    means = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values]
    return float(np.nanmax(means)) if np.isfinite(means).any() else float("nan")
