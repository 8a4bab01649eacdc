"""Every score by name: the only place a score key such as ``ins-del/blurred`` is spelled.

Two kinds of keys, both documented in ``docs/evaluation.md``:

- **per-design scores**, ``Evaluation.per_sample[key]`` arrays ``(method, sample)``, which
  :func:`explain.evaluation.protocol.evaluate` produces batch by batch;
- **table columns**, ``Evaluation.table[method][key]`` floats, which :func:`summarise` makes
  from the per-design scores, the random-order reference and the sanity checks. These are
  the columns of ``scores.csv`` and ``summary.json`` and what the recommendation reads.

Adding a score: its key here (in :func:`per_sample_keys`, and a :data:`DISPLAY` entry to
show it in ``scores.md``) plus the function that computes it, called from ``protocol.py``.
``tests/explain/evaluation/test_table.py`` fails while a declared key has no producer or a
produced key is not declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from explain.catalogue import METHODS
from explain.evaluation.sanity import MEASURES, passes


def _keyed(template: str) -> Callable[[str], str]:
    """A key maker: ``_keyed("ins-del/{}")("blurred") == "ins-del/blurred"``."""
    return template.format


# -- per-design scores ------------------------------------------------------------------------

deletion_auc = _keyed("deletion_auc/{}")  # (baseline) -> key
insertion_auc = _keyed("insertion_auc/{}")
small_change = _keyed("small_change/{}")  # 1 where |f(x) - f(b)| < 0.1 target std

ROAD_MORF, ROAD_LERF, ROAD_COMBINED = "road_morf", "road_lerf", "road_combined"
ROAD_SCORES = (ROAD_MORF, ROAD_LERF, ROAD_COMBINED)
GT_SPEARMAN_INPUT = "gt_spearman_input"
GT_SPEARMAN_NATIVE = "gt_spearman_native"  # methods with a layer-grid map only
GT_RMA, GT_RRA, GT_POINTING, GT_IOU = "gt_rma", "gt_rra", "gt_pointing", "gt_iou"
GROUND_TRUTH_SCORES = (
    GT_SPEARMAN_INPUT,
    GT_SPEARMAN_NATIVE,
    GT_RMA,
    GT_RRA,
    GT_POINTING,
    GT_IOU,
)

# The error budget of a method's agreement with the truth (with ground truth only): does the map
# describe the model (its Spearman with the model's own integrated gradients), did the model learn
# the physics (the model's integrated gradients against the truth, the same for every method),
# and how far can the method's grid go (the truth block-summed onto that grid and brought back
# by the same interpolation, against the truth: 1 for input-grid methods)
EB_MODEL_IG = "eb_model_ig"
EB_IG_TRUTH = "eb_ig_truth"
EB_CEILING = "eb_grid_ceiling"
ERROR_BUDGET_SCORES = (EB_MODEL_IG, EB_IG_TRUTH, EB_CEILING)

# The agreement with the truth split by the designs' regime (explain/evaluation/splits.py): the
# scores split, and the count of designs in each bin
SPLIT_SCORES = (GT_SPEARMAN_INPUT, *ERROR_BUDGET_SCORES)
DESIGNS = "designs"

# The layer sweep (explain/evaluation/layers.py), one row per layer and method: the columns of
# layers.csv and summary.json's "layers"; the scores are those of the table above at that layer
LAYER, LAYER_HEIGHT, LAYER_WIDTH, LAYER_CELL, METHOD = "layer", "height", "width", "cell", "method"
CEILING_FRACTION = "ceiling_fraction"  # gt_spearman_input / eb_grid_ceiling
LAYER_COLUMNS = (
    LAYER,
    LAYER_HEIGHT,
    LAYER_WIDTH,
    LAYER_CELL,
    METHOD,
    DESIGNS,
    GT_SPEARMAN_INPUT,
    GT_SPEARMAN_NATIVE,
    EB_CEILING,
    CEILING_FRACTION,
)


# what each per-design score is (the long_name of its variable in scores.nc); every one is a
# ratio or a correlation, dimensionless ("1"); ``{}`` stands for the baseline
_LONG_NAMES = {
    "deletion_auc": "area under the deletion curve (f(x_t) - f(b)) / (f(x) - f(b)), baseline {}",
    "insertion_auc": "area under the insertion curve (f(x_t) - f(b)) / (f(x) - f(b)), baseline {}",
    "small_change": "1 where |f(x) - f(b)| < 0.1 target std (scores dominated by noise), "
    "baseline {}",
    ROAD_MORF: "ROAD, most relevant first: mean (f(x_p) - f(x)) / target std over the "
    "removed shares p",
    ROAD_LERF: "ROAD, least relevant first: mean (f(x_p) - f(x)) / target std over the "
    "removed shares p",
    ROAD_COMBINED: "ROAD combined: (LeRF mean - MoRF mean) / 2, higher = better",
    GT_SPEARMAN_INPUT: "Spearman correlation of the map with the exact contribution, input grid",
    GT_SPEARMAN_NATIVE: "Spearman correlation of the layer-grid map with the block-summed "
    "exact contribution",
    GT_RMA: "relevance mass accuracy: share of the map's positive mass in the top 10% of "
    "|contribution|",
    GT_RRA: "relevance rank accuracy: share of the map's top 10% cells in the top 10% of "
    "|contribution|",
    GT_POINTING: "pointing game: 1 where the map's maximum lies in the top 10% of |contribution|",
    GT_IOU: "mean IoU over thresholds of the thresholded map with the top |contribution| cells",
    EB_MODEL_IG: "Spearman correlation of the map with the model's integrated gradients",
    EB_IG_TRUTH: "Spearman correlation of the model's integrated gradients with the exact "
    "contribution",
    EB_CEILING: "Spearman ceiling of the method's grid: block-summed and re-interpolated "
    "contribution vs. the contribution",
}


def per_sample_long_name(key: str) -> str:
    """The ``long_name`` of a per-design score (:func:`per_sample_keys`); its units are "1"."""
    name, _, baseline = key.partition("/")
    return _LONG_NAMES[name].format(baseline)


def per_sample_keys(settings: Mapping[str, Any], any_layer_method: bool = True) -> list[str]:
    """Every per-design score an evaluation with ``settings`` produces."""
    keys = [
        f(b) for b in settings["baselines"] for f in (deletion_auc, insertion_auc, small_change)
    ]
    keys += list(ROAD_SCORES)
    if settings["ground_truth"]:
        keys += [k for k in GROUND_TRUTH_SCORES if any_layer_method or k != GT_SPEARMAN_NATIVE]
        keys += list(ERROR_BUDGET_SCORES)
    return keys


# -- table columns ----------------------------------------------------------------------------


deletion = _keyed("deletion/{}")  # (baseline) -> key
insertion = _keyed("insertion/{}")
ins_del = _keyed("ins-del/{}")
ins_del_sem = _keyed("ins-del_sem/{}")
random_ins_del = _keyed("random_ins-del/{}")
flagged = _keyed("flagged/{}")
cascade = _keyed("cascade_{}")  # (measure) -> mean similarity over the cascade's steps
final = _keyed("final_{}")  # (measure) -> mean similarity at its last step
data = _keyed("data_{}")  # (measure) -> similarity to the permuted-target model's maps

ROAD_COMBINED_SEM = "road_combined_sem"
GT_SEM, GT_EXCLUDED = "gt_sem", "gt_excluded"
CASCADE_PASS, DATA_PASS = "cascade_pass", "data_pass"
INDEPENDENT_MAX_SPEARMAN_ABS = "independent_max_spearman_abs"
RECOMMENDED_BY_DESIGN = "recommended_by_design"


def table_keys(settings: Mapping[str, Any], any_layer_method: bool = True) -> list[str]:
    """Every column :func:`summarise` writes for an evaluation with ``settings``."""
    per_baseline = (deletion, insertion, ins_del, ins_del_sem, random_ins_del, flagged)
    keys = [f(b) for b in settings["baselines"] for f in per_baseline]
    keys += [*ROAD_SCORES, ROAD_COMBINED_SEM]
    if settings["ground_truth"]:
        keys += [k for k in GROUND_TRUTH_SCORES if any_layer_method or k != GT_SPEARMAN_NATIVE]
        keys += [*ERROR_BUDGET_SCORES, GT_SEM, GT_EXCLUDED]
    if settings["sanity_samples"]:
        keys += [f(m) for m in MEASURES for f in (cascade, final)]
        keys += [CASCADE_PASS, INDEPENDENT_MAX_SPEARMAN_ABS]
    if settings["data_randomisation"]:
        keys += [*(data(m) for m in MEASURES), DATA_PASS]
    return [*keys, RECOMMENDED_BY_DESIGN]


def criteria(settings: Mapping[str, Any]) -> list[str]:
    """The table columns the recommendation ranks on (higher is better for each)."""
    cols = [ins_del(b) for b in settings["baselines"]] + [ROAD_COMBINED]
    if settings.get("ground_truth"):
        cols += [GT_SPEARMAN_INPUT, GT_RMA]
    return cols


# -- summarising ------------------------------------------------------------------------------


def finite_mean(v: np.ndarray) -> float:
    """Mean of the finite values of ``v`` (a score is NaN where undefined); NaN if none."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _sem(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def _faithfulness_row(ev: Any, m: int) -> dict[str, float]:
    row: dict[str, float] = {}
    for b in ev.settings["baselines"]:
        flags = ev.per_sample[small_change(b)][m] > 0
        dele = np.where(flags, np.nan, ev.per_sample[deletion_auc(b)][m])
        ins = np.where(flags, np.nan, ev.per_sample[insertion_auc(b)][m])
        row[deletion(b)], row[insertion(b)] = finite_mean(dele), finite_mean(ins)
        row[ins_del(b)], row[ins_del_sem(b)] = finite_mean(ins - dele), _sem(ins - dele)
        rnd = ev.random[b]
        row[random_ins_del(b)] = finite_mean(rnd["insertion_auc"] - rnd["deletion_auc"])
        row[flagged(b)] = float(flags.sum())
    for name in ROAD_SCORES:
        row[name] = finite_mean(ev.per_sample[name][m])
    row[ROAD_COMBINED_SEM] = _sem(ev.per_sample[ROAD_COMBINED][m])
    return row


def _ground_truth_row(ev: Any, m: int) -> dict[str, float]:
    scores = (*GROUND_TRUTH_SCORES, *ERROR_BUDGET_SCORES)
    row = {k: finite_mean(ev.per_sample[k][m]) for k in scores if k in ev.per_sample}
    if GT_SPEARMAN_INPUT in ev.per_sample:
        row[GT_SEM] = _sem(ev.per_sample[GT_SPEARMAN_INPUT][m])
        row[GT_EXCLUDED] = float(np.isnan(ev.per_sample[GT_SPEARMAN_INPUT][m]).sum())
    return row


def sanity_row(method: str, over_steps: Mapping, last: Mapping, independent: Any) -> dict:
    """The cascade columns of one method from its summaries over the steps and at the end."""
    row: dict[str, float] = {}
    for k in MEASURES:
        row[cascade(k)], row[final(k)] = over_steps[k].mean, last[k].mean
    row[CASCADE_PASS] = float(passes(over_steps))
    row[INDEPENDENT_MAX_SPEARMAN_ABS] = _least_sensitive(independent, method)
    return row


def _least_sensitive(independent: Any, method: str) -> float:
    """Largest mean Spearman of |maps| over the independent re-initialisations."""
    if independent is None:
        return float("nan")
    values = independent.values[method]["spearman_abs"][1:]
    means = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values]
    return float(np.nanmax(means)) if np.isfinite(means).any() else float("nan")


def summarise(ev: Any) -> dict[str, dict[str, float]]:
    """Per-method means (and standard errors) of every score, and each sanity verdict."""
    table: dict[str, dict[str, float]] = {}
    final_step = ev.cascade.final() if ev.cascade is not None else None
    over = ev.cascade.over_steps() if ev.cascade is not None else None
    for m, method in enumerate(ev.methods):
        row = _faithfulness_row(ev, m) | _ground_truth_row(ev, m)
        if over is not None:
            row |= sanity_row(method, over[method], final_step[method], ev.independent)
        if ev.data_random is not None:
            row |= {data(k): ev.data_random[method][k].mean for k in MEASURES}
            row[DATA_PASS] = float(passes(ev.data_random[method]))
        row[RECOMMENDED_BY_DESIGN] = float(METHODS[method].recommended)
        table[method] = row
    return table


# -- display ----------------------------------------------------------------------------------

_SHORT = {"smooth-wall": "wall", "blurred": "blur"}


def display_columns(baselines: list[str]) -> list[tuple[str, str, str | None]]:
    """``(key, header, format)`` of the ``scores.md`` columns; format None = pass/fail."""
    cols: list[tuple[str, str, str | None]] = []
    for b in baselines:
        short = _SHORT.get(b, b)
        cols += [
            (insertion(b), f"ins ({short})", "{:.3f}"),
            (deletion(b), f"del ({short})", "{:.3f}"),
            (ins_del(b), f"ins−del ({short})", "{:.3f}"),
        ]
    return cols + DISPLAY


DISPLAY: list[tuple[str, str, str | None]] = [
    (ROAD_COMBINED, "ROAD comb.", "{:.3f}"),
    (GT_SPEARMAN_INPUT, "ρ truth", "{:.3f}"),
    (GT_SPEARMAN_NATIVE, "ρ truth (layer)", "{:.3f}"),
    (GT_RMA, "RMA@10%", "{:.3f}"),
    (GT_RRA, "RRA@10%", "{:.3f}"),
    (GT_POINTING, "pointing", "{:.2f}"),
    (GT_IOU, "IoU", "{:.3f}"),
    (EB_MODEL_IG, "ρ model IG", "{:.3f}"),
    (EB_IG_TRUTH, "ρ IG–truth", "{:.3f}"),
    (EB_CEILING, "grid ceiling", "{:.3f}"),
    (cascade("spearman_abs"), "cascade ρ of \\|m\\|", "{:.2f}"),
    (cascade("ssim"), "cascade SSIM", "{:.2f}"),
    (CASCADE_PASS, "model rand.", None),
    (data("spearman_abs"), "data ρ of \\|m\\|", "{:.2f}"),
    (DATA_PASS, "data rand.", None),
]
