"""Error budget of every method, for several trained models (architectures x seeds), at scale.

For each checkpoint, on the designs of a held-out synthetic campaign with peak margin >= 5%:
accuracy (R^2), and per method the mean Spearman rho of its input-grid maps with

- the exact contribution (``gt_spearman_input``: does the map match the physics?),
- the model's own integrated gradients (``eb_model_ig``: does it describe the model?),

beside the model's integrated gradients against the truth (``eb_ig_truth``: did the surrogate
learn the physics?) and the resolution ceiling of the method's grid (``eb_grid_ceiling``). The
same functions as ``surrogate evaluate`` (``explain.evaluation``), without its faithfulness
and sanity passes, so that thousands of designs and several models fit a CPU session. Between
seeds of one architecture it also reports how much their maps agree (mean over pairs and
designs of the per-design Spearman): equally accurate networks may learn different functions.
With ``--layer-sweep`` the first checkpoint of each model gets the layer-by-layer table.

    python benchmarks/error_budget.py --data campaigns/heldout-1500-s1.nc \\
        --model transport runs/default-s0/checkpoints/best-*.ckpt ... \\
        --model cnn runs/cnn-s0/checkpoints/best-*.ckpt ...
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from data.physics import PhysicsParams
from data.simulator import saturation_ratio
from explain.api import Explainer, implemented
from explain.catalogue import METHODS
from explain.evaluation.groundtruth import MIN_MARGIN, grid_ceiling, kept_samples, truth_spearman
from explain.evaluation.layers import layer_sweep
from explain.evaluation.similarity import spearman
from explain.evaluation.splits import SPLITS, bin_index
from explain.path import integrated_gradients
from surrogate import load_model


def all_methods() -> list[str]:
    """Every implemented catalogue method, null references included."""
    return [name for name, m in METHODS.items() if name in implemented(m.family)]


def explain_all(model, roughness: np.ndarray, methods: list[str], batch: int, mode: str):
    """Predictions ``(n,)``, input-grid maps ``{method: (n, y, x)}``, IG, IG residuals, shapes."""
    ex = Explainer(model, roughness.shape[1:], methods, interpolation=(mode,), chunk=512)
    preds, maps, igs, residual = [], {m: [] for m in ex.methods}, [], []
    for start in tqdm(range(0, len(roughness), batch), desc="maps", unit="batch", leave=False):
        x = torch.from_numpy(roughness[start : start + batch])[:, None]
        y, native = ex.maps(x)
        grid = ex.on_input_grid(native, mode)
        for j, m in enumerate(ex.methods):
            maps[m].append(grid[:, j].numpy().astype(np.float32))
        if "integrated-gradients" in native:  # the method itself: smooth wall, 32 nodes
            ig = native["integrated-gradients"]
            with torch.no_grad():
                change = y - model(torch.zeros_like(x))
        else:
            fx, ig, fb = integrated_gradients(model, x)
            change = fx - fb
        gap = ig.sum(dim=(1, 2)) - change
        igs.append(ig.detach().numpy())
        residual.append((gap.abs() / change.abs().clamp_min(1e-12)).detach().numpy())
        preds.append(y.numpy())
    shapes = {m: _grid(ex, m) for m in ex.methods}
    return (
        np.concatenate(preds),
        {m: np.concatenate(v) for m, v in maps.items()},
        np.concatenate(igs).astype(np.float64),
        np.concatenate(residual),
        shapes,
        ex.layer,
    )


def _grid(ex: Explainer, method: str) -> tuple[int, int]:
    resolution = METHODS[method].resolution
    if resolution == "layer":
        return ex.layer_shape
    if resolution == "pyramid":
        return ex.pyramid_shape
    return ex.shape


def score_checkpoint(path: Path, data: dict, methods: list[str], batch: int, mode: str) -> dict:
    """Maps, accuracy and completeness of one checkpoint (the scores: :func:`method_scores`)."""
    model = load_model(path)
    start = time.perf_counter()
    pred, maps, ig, residual, shapes, layer = explain_all(
        model, data["roughness"], methods, batch, mode
    )
    y = data["target"]
    return {
        "checkpoint": str(path),
        "layer": layer,
        "r2": 1 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()),
        "ig_relative_residual": {
            "median": float(np.median(residual)),
            "p95": float(np.percentile(residual, 95)),
            "max": float(residual.max()),
        },
        "seconds": time.perf_counter() - start,
        "grids": {m: list(shapes[m]) for m in maps},
        "_maps": maps,
        "_ig": ig,
    }


def by_regime(rho: np.ndarray, data: dict) -> dict[str, dict[str, list]]:
    """Mean of per-design ``rho`` (kept designs) and the count in each bin of each split."""
    out = {}
    for split, bins in SPLITS.items():
        where = bin_index(data[split][data["kept"]], bins)
        out[split] = {
            b.name: [float(np.nanmean(rho[where == i])) if (where == i).any() else None,
                     int((where == i).sum())]
            for i, b in enumerate(bins)
        }  # fmt: skip
    return out


def method_scores(result: dict, data: dict, mode: str) -> dict[str, dict]:
    """Per method: ρ with the truth (overall and by regime), with the model's IG, the model's
    IG with the truth and the grid ceiling (the ``eb_*`` columns of ``surrogate evaluate``)."""
    truth, kept, ig = data["truth"][data["kept"]], data["kept"], result["_ig"][data["kept"]]
    ig_truth = float(np.nanmean(spearman(ig, truth)))
    rows = {}
    for m, values in result["_maps"].items():
        v = values[kept].astype(np.float64)
        rho = truth_spearman(v, truth, METHODS[m].rectified)
        grid = tuple(result["grids"][m])
        rows[m] = {
            "gt_spearman_input": float(np.nanmean(rho)),
            "by_regime": by_regime(rho, data),
            "eb_model_ig": float(np.nanmean(spearman(v, ig))),
            "eb_ig_truth": ig_truth,
            "eb_grid_ceiling": float(np.nanmean(grid_ceiling(truth, grid, mode))),
            "grid": list(grid),
        }
    return rows


def cached_score(
    path: Path, data: dict, methods: list[str], batch: int, mode: str, cache: Path | None
) -> dict:
    """:func:`score_checkpoint` then :func:`method_scores`; the maps kept in ``cache`` if given
    (.npz, with the model's IG as ``_ig``; the rest in .json)."""
    if cache is None:
        result = score_checkpoint(path, data, methods, batch, mode)
    else:
        key = "|".join([str(path.resolve()), str(path.stat().st_mtime),
                        str(len(data["target"])), mode, *methods])  # fmt: skip
        stem = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
        if stem.with_suffix(".json").exists():
            result = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz")) as saved:
                arrays = {m: saved[m] for m in saved.files}
            result["_ig"] = arrays.pop("_ig").astype(np.float64)
            result["_maps"] = arrays
        else:
            result = score_checkpoint(path, data, methods, batch, mode)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(stem.with_suffix(".npz"), _ig=result["_ig"], **result["_maps"])
            plain = {k: v for k, v in result.items() if not k.startswith("_")}
            stem.with_suffix(".json").write_text(json.dumps(plain, indent=2) + "\n")
    result["methods"] = method_scores(result, data, mode)
    return result


def seed_agreement(results: list[dict], kept: np.ndarray) -> dict[str, float]:
    """Per method, mean per-design Spearman between the maps of every pair of checkpoints."""
    if len(results) < 2:
        return {}
    agreement = {}
    for m in results[0]["_maps"]:
        pairs = [
            np.nanmean(spearman(a["_maps"][m][kept], b["_maps"][m][kept]))
            for a, b in itertools.combinations(results, 2)
        ]
        agreement[m] = float(np.mean(pairs))
    return agreement


def markdown(report: dict) -> str:
    """One table per model: each method's mean (and spread over seeds) of every column."""
    lines = []
    for name, model in report["models"].items():
        seeds = model["checkpoints"]
        r2 = [c["r2"] for c in seeds]
        lines += [
            f"### {name}: {len(seeds)} seeds, test R² "
            + ", ".join(f"{v:.4f}" for v in r2)
            + f" on {report['designs']} designs ({report['kept']} with margin ≥ 5%)",
            "",
            "| method | ρ truth | ρ with the model's IG | model IG vs truth | grid ceiling "
            "| maps agree across seeds |",
            "|---|---|---|---|---|---|",
        ]
        for m in seeds[0]["methods"]:
            cells = []
            for key in ("gt_spearman_input", "eb_model_ig", "eb_ig_truth", "eb_grid_ceiling"):
                v = np.array([c["methods"][m][key] for c in seeds])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}")
            agree = model["seed_agreement"].get(m)
            grid = "×".join(map(str, seeds[0]["methods"][m]["grid"]))
            cells.append("–" if agree is None else f"{agree:.3f}")
            lines.append(f"| {m} ({grid}) | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _regime_table(seeds)
    return "\n".join(lines)


def _regime_table(seeds: list[dict]) -> list[str]:
    """ρ truth by saturation regime and peak margin (mean over seeds), input-resolution methods
    and the layer methods, designs per bin in the header."""
    methods = list(seeds[0]["methods"])
    first = seeds[0]["methods"][methods[0]]["by_regime"]
    columns = [(split, name) for split, bins in first.items() for name in bins]
    counts = [first[split][name][1] for split, name in columns]
    head = " | ".join(f"{name} ({n})" for (_, name), n in zip(columns, counts, strict=True))
    lines = [f"| ρ truth by regime | {head} |", "|---|" + "---|" * len(columns)]
    for m in methods:
        cells = []
        for split, name in columns:
            values = [c["methods"][m]["by_regime"][split][name][0] for c in seeds]
            values = [v for v in values if v is not None]
            cells.append(f"{np.mean(values):.3f}" if values else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="held-out synthetic campaign")
    parser.add_argument(
        "--model", nargs="+", action="append", required=True, metavar=("NAME", "CKPT"),
        help="a name, then one checkpoint per seed (repeat for each architecture)",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, help="the first N designs (default all)")
    parser.add_argument("--methods", nargs="+", help="default: every implemented method")
    parser.add_argument("--interpolation", default="bilinear")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--layer-sweep", action="store_true")
    parser.add_argument("--cache", type=Path, help="keep each checkpoint's maps here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/error_budget.json"))
    opts = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    with xr.open_dataset(opts.data) as ds:
        n = opts.samples or ds.sizes["sample"]
        data = {
            "roughness": ds["roughness"].values[:n].astype(np.float32),
            "truth": ds["contribution"].values[:n].astype(np.float64),
            "target": ds["max_vorticity"].values[:n].astype(np.float64),
            "margin": ds["peak_margin"].values[:n].astype(np.float64),
        }
        physics = PhysicsParams.from_attrs(ds.attrs)
        if physics is None:
            raise SystemExit(f"{opts.data}: not a synthetic campaign (no model_* attributes)")
        omega_s = physics.omega_s
    data["kept"] = kept_samples(data["truth"], data["margin"], MIN_MARGIN)
    data["peak_margin"] = data["margin"]
    data["saturation"] = saturation_ratio(data["target"], omega_s)
    methods = opts.methods or all_methods()
    report = {
        "benchmark": "error budget",
        "data": str(opts.data),
        "designs": n,
        "kept": len(data["kept"]),
        "interpolation": opts.interpolation,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.node()} threads={torch.get_num_threads()}",
        "command": " ".join(["python benchmarks/error_budget.py", *(argv or sys.argv[1:])]),
        "models": {},
    }
    for name, *paths in opts.model:
        results = []
        for path in paths:
            print(f"{name}: {path}", flush=True)
            results.append(
                cached_score(
                    Path(path), data, methods, opts.batch_size, opts.interpolation, opts.cache
                )
            )
            best = max(results[-1]["methods"].items(), key=lambda kv: kv[1]["gt_spearman_input"])
            print(
                f"  R2 {results[-1]['r2']:.4f}, best rho {best[1]['gt_spearman_input']:.3f} "
                f"({best[0]}), {results[-1]['seconds']:.0f} s",
                flush=True,
            )
        entry = {"seed_agreement": seed_agreement(results, data["kept"])}
        if opts.layer_sweep:
            sweep = layer_sweep(
                load_model(Path(paths[0])), data["roughness"], data["truth"], data["margin"],
                ("cam", "hirescam", "layercam"), interpolation=opts.interpolation,
            )  # fmt: skip
            entry["layer_sweep"] = [vars(row) for row in sweep]
        for r in results:
            r.pop("_maps")
            r.pop("_ig")
        entry["checkpoints"] = results
        report["models"][name] = entry
    report["markdown"] = markdown(report)
    print(report["markdown"])
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
